"""Pose quality and cost of every pose backend that can run here, on the shared real assets.

    .venv/bin/python benchmarks/pose_quality.py                  # every backend, default sizes
    .venv/bin/python benchmarks/pose_quality.py --quick          # a smoke run (about a minute)
    .venv/bin/python benchmarks/pose_quality.py --backends topdown --set hand_min_size=0

Per backend, one table row each: ``topdown`` as ``jobs/preprocess/cpu.yaml`` configures it,
``movenet`` as ``cpu_fast.yaml`` (both with the shared assets' models, ``$MCANIM_ASSETS``),
``dwpose`` as ``paper.yaml`` does when its files are in ``$MCANIM_WEIGHTS/dwpose/``:

- **COCO-WholeBody images** (``images/coco_wholebody``, body 17): the annotated people with at
  least 10 visible body points; recall = matched at OKS >= 0.5 (COCO OKS over the visible
  points, COCO sigmas, the annotation's area; one-to-one Hungarian matching per image), and
  the mean OKS of those matches;
- **hands** on the same images: PCK@0.2 (a point is correct within 0.2 x the longer side of
  the annotated hand box) over the annotated hands of matched people, absent hands counting
  as wrong, and how many of them the backend returned (passed its size and presence gate);
- **dance_single.mp4** (one dancer, 1080x1920), frames resized to the stored short side 640:
  fraction of frames with a person, and with a confident hand (a hand point scored >= 0.5);
- **vtest.avi** at short side 640 (853x640): people per frame after cleanup (all, and those
  with >= 8 confident body points: the walkers, not a bollard's 2 points), their recall
  against the reference (``topdown`` with boxes on every frame, ``pose.detect_every=1``:
  its people with >= 8 confident points matched at OKS >= 0.5; what box propagation loses),
  and the pose stage's speed (detections + cleanup + tracking: ``PoseBackend.track_frames``) in frames/s of
  wall time and frames per CPU-second of this process. The machine's load average is printed:
  on a shared machine wall time is only comparable within one run.

Backends run with ``pose.threads`` = ``--threads``; ``--set key=value`` overrides a
``PoseConfig`` field of every backend (e.g. ``--set box_sources=[nanodet]``). Results go to
stdout as a markdown table, for docs/pose.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy.optimize import linear_sum_assignment

from preprocess.config import PoseConfig, PreprocessConfig
from preprocess.pose import PoseBackend, create_pose_backend
from preprocess.pose.cleanup import COCO_BODY_SIGMAS
from preprocess.weights import assets_dir
from shards.config import load_config

log = logging.getLogger("pose_quality")

MIN_VISIBLE = 10
HANDS = (("lefthand", 91), ("righthand", 112))
PRESETS = Path(__file__).resolve().parents[1] / "jobs" / "preprocess"
QUICK = ["--images", "2", "--dance-frames", "4", "--vtest-frames", "4"]
"""``--quick``: a smoke run of every row on a few images and frames."""


def backend_configs(threads: int) -> dict[str, PoseConfig]:
    """The backends this machine can run: ``topdown`` as the CPU preset configures it
    (``jobs/preprocess/cpu.yaml``), ``movenet`` as the fast CPU preset (``cpu_fast.yaml``),
    ``dwpose`` as the paper preset when its files are in the weights cache."""
    configs = {
        name: load_config(PreprocessConfig, PRESETS / preset).pose
        for name, preset in (("movenet", "cpu_fast.yaml"), ("topdown", "cpu.yaml"))
    }
    paper = load_config(PreprocessConfig, PRESETS / "paper.yaml").pose
    if all(Path(p).expanduser().is_file() for p in (paper.detector, paper.model)):
        configs["dwpose"] = paper
    else:
        log.info("dwpose skipped: %s or %s missing (fetch: python -m preprocess.weights "
                 "fetch dwpose)", paper.detector, paper.model)  # fmt: skip
    return {k: replace(c, device="cpu", threads=threads) for k, c in configs.items()}


def oks(pred: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO OKS of (17, 3) predicted vs annotated keypoints, over the visible ones."""
    visible = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    return float(
        np.exp(-d2 / (2 * area * (2 * COCO_BODY_SIGMAS.astype(np.float64)) ** 2 + np.spacing(1)))[
            visible
        ].mean()
    )


def hand_pck(pred: np.ndarray, gt: np.ndarray, box: list[float]) -> tuple[int, int]:
    """(correct, annotated) points of one hand: (21, 3) vs (21, 3), threshold 0.2 x box side."""
    visible = gt[:, 2] > 0
    dist = np.hypot(*(pred[:, :2] - gt[:, :2]).T)
    ok = (pred[:, 2] > 0) & (dist <= 0.2 * max(box[2], box[3]))
    return int((ok & visible).sum()), int(visible.sum())


def coco(backend: PoseBackend, n_images: int) -> dict[str, float]:
    folder = assets_dir() / "images" / "coco_wholebody"
    data = json.loads((folder / "test_coco_wholebody.json").read_text())
    matched, people, correct, annotated, hands, returned = [], 0, 0, 0, 0, 0
    for image in data["images"][: n_images or None]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        anns = [a for a in anns if (np.array(a["keypoints"][2:51:3]) > 0).sum() >= MIN_VISIBLE]
        bgr = cv2.imread(str(folder / image["file_name"]))
        if bgr is None:
            raise SystemExit(f"cannot read {folder / image['file_name']}")
        (dets,) = backend.people(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None])
        gts = [np.array(a["keypoints"], np.float32).reshape(-1, 3) for a in anns]
        sim = np.array(
            [[oks(d[:17], g[:17], a["area"]) for d in dets] for g, a in zip(gts, anns, strict=True)]
        )
        people += len(anns)
        if not sim.size:
            continue
        for r, c in zip(*linear_sum_assignment(-sim), strict=True):
            if sim[r, c] < 0.5:
                continue
            matched.append(sim[r, c])
            for name, first in HANDS:
                if not anns[r][f"{name}_valid"]:
                    continue
                gt = np.array(anns[r][f"{name}_kpts"], np.float32).reshape(21, 3)
                pred = dets[c, first : first + 21]
                got, total = hand_pck(pred, gt, anns[r][f"{name}_box"])
                correct, annotated = correct + got, annotated + total
                hands, returned = hands + 1, returned + int((pred[:, 2] > 0).any())
    return {
        "people": people,
        "found": len(matched),
        "mean_oks": float(np.mean(matched)) if matched else 0.0,
        "hand_pck": correct / max(annotated, 1),
        "hands": hands,
        "hands_returned": returned,
    }


def stored_frames(name: str, n: int) -> np.ndarray:
    """The first ``n`` frames (0: all) of an assets video at short side 640, as the decoder
    stores them (both sides even), RGB."""
    path = assets_dir() / "videos" / name
    if not path.is_file():
        raise SystemExit(f"{path} not found: set MCANIM_ASSETS to the shared assets folder")
    cap, frames = cv2.VideoCapture(str(path)), list[np.ndarray]()
    while not n or len(frames) < n:  # resized one by one: the full-size video would not fit
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        s = 640 / min(h, w)
        size = (round(w * s / 2) * 2, round(h * s / 2) * 2)
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)  # (T, h, w, 3)


def dance(backend: PoseBackend, n: int) -> dict[str, float]:
    people = backend.people(stored_frames("dance_single.mp4", n))
    with_hand = [bool((p[:, 91:133, 2] >= 0.5).any()) for p in people]
    return {"frames": len(people), "person": float(np.mean([len(p) > 0 for p in people])),
            "hands": float(np.mean(with_hand))}  # fmt: skip


WALKER_POINTS = 8
"""A vtest person with at least this many confident body points is a walker (the detector's
false people, a bollard or a sign, get 1-3)."""


def walkers(people: list[np.ndarray], min_score: float) -> list[np.ndarray]:
    """Each frame's people with >= :data:`WALKER_POINTS` body points scored >= ``min_score``."""
    return [p[(p[:, :17, 2] >= min_score).sum(1) >= WALKER_POINTS] for p in people]


def recall_against(people: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Fraction of the reference people (per frame) matched one-to-one by ``people`` at OKS
    >= 0.5 (the reference's points scored >= 0.3 as the visible ones, its keypoint box as the
    area)."""
    found = total = 0
    for dets, refs in zip(people, reference, strict=True):
        total += len(refs)
        if not len(refs) or not len(dets):
            continue
        gts = [np.where(r[:17, 2:] >= 0.3, r[:17], 0.0) for r in refs]
        areas = [float(np.prod(np.ptp(g[g[:, 2] > 0, :2], 0))) for g in gts]
        sim = np.array([[oks(d[:17], g, a) for d in dets] for g, a in zip(gts, areas, strict=True)])
        found += int((sim[linear_sum_assignment(-sim)] >= 0.5).sum())
    return found / max(total, 1)


def vtest(backend: PoseBackend, n: int, reference: list[np.ndarray]) -> dict[str, float]:
    frames = stored_frames("vtest.avi", n)  # (T, 640, 853, 3)
    backend.people(frames[:1])  # warm-up: session initialisation
    wall, cpu = time.perf_counter(), time.process_time()
    tracks = backend.track_frames(frames)  # (T, P, 133, 3)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    people = backend.people(frames)
    walking = walkers(people, backend.cfg.min_score)
    return {"frames": len(frames), "people": float(np.mean([len(p) for p in people])),
            "walkers": float(np.mean([len(p) for p in walking])),
            "recall": recall_against(walking, reference),
            "tracks": tracks.shape[1], "fps": len(frames) / wall,
            "fps_cpu": len(frames) / cpu}  # fmt: skip


def vtest_reference(cfg: PoseConfig, n: int) -> list[np.ndarray]:
    """The walkers of the reference: ``cfg`` (the CPU preset's ``topdown``) with boxes on
    every frame."""
    backend = create_pose_backend(replace(cfg, detect_every=1, hand_model=""))
    return walkers(backend.people(stored_frames("vtest.avi", n)), cfg.min_score)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pose_quality.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Assets: $MCANIM_ASSETS (default ../shared/assets); dwpose: $MCANIM_WEIGHTS.",
    )
    parser.add_argument("--backends", nargs="*", help="backends to run (default: all available)")
    parser.add_argument("--images", type=int, default=0, help="COCO images to use (0: all 4)")
    parser.add_argument("--dance-frames", type=int, default=96,
                        help="first frames of dance_single.mp4 (default 96; 0: all 288)")  # fmt: skip
    parser.add_argument("--vtest-frames", type=int, default=32,
                        help="first frames of vtest.avi for people/frame and speed (default 32)")  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=2, help="onnxruntime threads, pose.threads (default 2)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a PoseConfig field of every backend (YAML value; repeatable)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {' '.join(QUICK)}")
    args = parser.parse_args(argv)
    if args.quick:
        args = parser.parse_args([*(argv or []), *QUICK])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    configs = backend_configs(args.threads)
    names = args.backends or list(configs)
    unknown = set(names) - set(configs)
    if unknown:
        parser.error(f"cannot run {sorted(unknown)} here; available: {sorted(configs)}")
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print("| backend | COCO recall @OKS≥0.5 | mean matched OKS | hand PCK@0.2 | hands returned "
          "| dance: person | dance: hands | vtest people/frame (walkers) "
          "| vtest walker recall | fps (wall) | frames/CPU-s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    reference = vtest_reference(configs["topdown"], args.vtest_frames)
    for name in names:
        backend = create_pose_backend(replace(configs[name], **overrides))
        c = coco(backend, args.images)
        d = dance(backend, args.dance_frames)
        v = vtest(backend, args.vtest_frames, reference)
        print(
            f"| {name} | {c['found']}/{c['people']} | {c['mean_oks']:.3f} | "
            f"{c['hand_pck']:.2f} | {c['hands_returned']}/{c['hands']} | "
            f"{d['person']:.3f} ({d['frames']} fr) | {d['hands']:.3f} | "
            f"{v['people']:.2f} ({v['walkers']:.2f}) | {v['recall']:.3f} | "
            f"{v['fps']:.2f} | {v['fps_cpu']:.2f} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}; threads {args.threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
