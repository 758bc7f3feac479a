"""The Ray job on a large corpus of short videos: costs per stored frame and pipeline efficiency.

    .venv/bin/python benchmarks/corpus.py [--videos 300] [--frames-per-video 24] [--cpus 2]
        [--source PATH] [--pose precomputed|config] [--alone-videos 8] [--quick] [KEY=VALUE ...]

1. Corpus: the source (default the 1080x1920 dance video of $MCANIM_ASSETS) is cut into
   non-overlapping pieces of ``--frames-per-video`` frames, each re-encoded as a short H.264
   MP4 at the source resolution (PyAV, one decoding pass), and ``--videos`` files are made
   from them in a temporary folder (hard links under distinct names: distinct video ids, the
   same pictures). With ``--pose precomputed`` (default: the CPU stand-in, so that the run
   takes minutes here) each video gets a pose sidecar of one synthetic person; ``config``
   keeps the preset's pose model.
2. Each stage alone, in this process, on the first ``--alone-videos`` videos (as both
   runners build them: ``preprocess.stages``; the codecs and OpenCV on one thread, as in a
   one-CPU Ray task; each clip through the stages as it is decoded, each stage call timed by
   itself; one video first, uncounted, as warm-up): CPU-seconds (getrusage, every thread) per
   stored frame; decode includes opening and probing each video. Measured before and after
   the job, since this machine's speed drifts over minutes: the bound uses their mean and
   their spread is printed. The CPU bound for any runner is cores ÷ the sum of the stages'
   CPU-seconds per frame.
3. The Ray job (``preprocess.ray_job.run_ray``, what ``python -m preprocess`` runs; it starts
   its local Ray instance, start-up counted) on the whole corpus, pinned to ``--cpus`` cores.
   Prints per stored frame: the driver's CPU ms (this process) and the bytes it received, the
   object-store bytes ÷ the raw frame's bytes, the shard bytes; the end-to-end rate ÷ the CPU
   bound (pipeline efficiency); the stages' seconds inside the run; the peak unique memory
   (USS) of every Ray worker. Summary figures the job does not report print ``n/a``.

Other processes on the machine take cores too: the load average is printed at the start and
the end. The figures and the capacity plan built on them: docs/cluster.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
import numpy as np
from pipeline import WorkerMemory  # benchmarks/pipeline.py: the same Ray worker sampler

from preprocess.config import PreprocessConfig
from preprocess.decode import iter_clips, probe_video
from preprocess.devices import apply_cpu_threads
from preprocess.pose.precomputed import write_sidecar
from preprocess.ray_job import run_ray
from preprocess.runner import backend_identities, build_steps, load_models
from preprocess.stages import DECODE, STAGES, Stage, StageFn, run_stage
from preprocess.weights import assets_dir
from shards.config import config_to_dict, load_config
from shards.logs import setup_logging

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.corpus")

# One person, 17 COCO body points (x, y) as fractions of the frame: a standing figure.
_BODY = np.array(
    [
        [0.50, 0.20], [0.52, 0.18], [0.48, 0.18], [0.54, 0.19], [0.46, 0.19],
        [0.58, 0.28], [0.42, 0.28], [0.62, 0.40], [0.38, 0.40], [0.63, 0.50],
        [0.37, 0.50], [0.55, 0.52], [0.45, 0.52], [0.56, 0.68], [0.44, 0.68],
        [0.57, 0.84], [0.43, 0.84],
    ],
    np.float32,
)  # fmt: skip


def cpu_seconds() -> float:
    """CPU-seconds of this process so far, every thread counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def synthetic_pose(n_frames: int, height: int, width: int) -> np.ndarray:
    """[n_frames, 1, 17, 3] keypoints of one person swaying, in source pixels, score 0.9."""
    sway = 0.05 * np.sin(np.arange(n_frames) / 6.0)  # (N,)
    xy = np.repeat(_BODY[None], n_frames, axis=0)  # (N, 17, 2)
    xy[..., 0] += sway[:, None]
    kp = np.concatenate([xy * [width, height], np.full((n_frames, 17, 1), 0.9)], axis=-1)
    return kp[:, None].astype(np.float32)  # (N, 1, 17, 3)


def cut_pieces(source: str, folder: Path, count: int, length: int) -> list[Path]:
    """Up to ``count`` consecutive pieces of ``length`` frames of ``source``, each an H.264
    MP4 at the source resolution (x264 ultrafast, CRF 16), in one decoding pass."""
    pieces: list[Path] = []
    batch: list[av.VideoFrame] = []
    with av.open(source) as src:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or 24
        for frame in src.decode(stream):
            batch.append(frame)
            if len(batch) < length:
                continue
            pieces.append(folder / f"piece_{len(pieces):03d}.mp4")
            with av.open(str(pieces[-1]), "w") as out:
                enc = out.add_stream("libx264", rate=rate)
                enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
                enc.options = {"crf": "16", "preset": "ultrafast"}
                for f in batch:
                    out.mux(enc.encode(f.reformat(format="yuv420p")))
                out.mux(enc.encode())
            batch = []
            if len(pieces) >= count:
                break
    if not pieces:
        raise SystemExit(f"{source} has fewer than {length} frames: lower --frames-per-video")
    return pieces


def build_corpus(source: str, folder: Path, videos: int, length: int, sidecars: bool) -> list[str]:
    """``videos`` short MP4s of ``length`` frames cut from ``source`` into ``folder`` (the
    pieces repeat under distinct names when the source has fewer), with pose sidecars."""
    pieces = cut_pieces(source, folder, videos, length)
    with av.open(str(pieces[0])) as first:
        size = (first.streams.video[0].height, first.streams.video[0].width)
    paths = []
    for n in range(videos):
        path = folder / f"video_{n:05d}.mp4"
        os.link(pieces[n % len(pieces)], path)
        if sidecars:
            write_sidecar(folder / f"video_{n:05d}.pose.npz", synthetic_pose(length, *size))
        paths.append(str(path))
    return paths


def stages_alone(videos: list[str], cfg: PreprocessConfig) -> tuple[int, dict[str, float]]:
    """(stored frames, CPU-seconds per stored frame of each stage run alone), the codecs on
    one thread as in a one-CPU Ray task (Ray sets ``OMP_NUM_THREADS`` there, which
    ``preprocess.devices.cpu_threads`` reads; OpenCV likewise, ``apply_cpu_threads``). The
    first video runs once before, uncounted:
    the first opening of the libraries and the models' first calls are start-up, which the
    job pays once per worker, not per frame."""
    os.environ["OMP_NUM_THREADS"] = "1"
    apply_cpu_threads()  # OpenCV on one thread too, as in a Ray worker
    models = load_models(cfg)
    run_meta = {"config": config_to_dict(cfg), "backends": backend_identities(models)}
    steps = build_steps(cfg, run_meta, models)
    measure_stages(videos[:1], cfg, steps)  # warm-up
    return measure_stages(videos, cfg, steps)


def measure_stages(
    videos: list[str], cfg: PreprocessConfig, steps: list[tuple[Stage, StageFn]]
) -> tuple[int, dict[str, float]]:
    """(stored frames, CPU-seconds per stored frame of each stage) of ``videos``: each clip
    through the stages as it is decoded, every stage call timed by itself. One clip in memory
    at a time, as in every runner (decoding all the clips first, then each stage over all of
    them, cost 2-4 ms more per frame in decode: the page faults of holding them all)."""
    cpu: dict[str, float] = defaultdict(float)
    frames = 0
    for video in videos:
        start = cpu_seconds()
        clips = iter_clips(probe_video(video, cfg.decode), cfg.decode)
        while (clip := next(clips, None)) is not None:
            cpu[DECODE] += cpu_seconds() - start
            frames += clip.n_frames
            for stage, fn in steps:
                start = cpu_seconds()
                clip = run_stage(stage, fn, clip, None, 0.0)
                cpu[stage.name] += cpu_seconds() - start
            start = cpu_seconds()
        cpu[DECODE] += cpu_seconds() - start  # the end of the video
    return frames, {name: s / frames for name, s in cpu.items()}


def field_bytes(tars: list[Path]) -> dict[str, int]:
    """Bytes of each sample field (``KEY.FIELD`` members) over the tars, largest first."""
    sizes: dict[str, int] = defaultdict(int)
    for path in tars:
        with tarfile.open(path) as tar:
            for member in tar:
                sizes[member.name.split(".", 1)[-1]] += member.size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def per_frame(summary: Any, name: str, frames: int) -> str:
    """``summary.NAME`` ÷ frames, or n/a when the job does not report it."""
    value = getattr(summary, name, None)
    return f"{value / frames:.0f}" if value and frames else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=300, help="short videos in the corpus")
    parser.add_argument(
        "--frames-per-video", type=int, default=24, help="frames of each short video (>= 16)"
    )
    parser.add_argument("--cpus", type=int, default=2, help="cores to pin everything to")
    parser.add_argument(
        "--source",
        default=str(assets_dir() / "videos" / "dance_single.mp4"),
        help="video the corpus is cut from (default: dance_single.mp4 of $MCANIM_ASSETS)",
    )
    parser.add_argument(
        "--pose",
        choices=["precomputed", "config"],
        default="precomputed",
        help="precomputed: synthetic sidecars, no pose model (default); config: the preset's",
    )
    parser.add_argument(
        "--alone-videos", type=int, default=8, help="videos for the stages-alone measurement"
    )
    parser.add_argument(
        "--config",
        default=str(REPO / "jobs" / "preprocess" / "cpu.yaml"),
        help="preprocessing preset (default jobs/preprocess/cpu.yaml)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 videos of 16 frames")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.quick:
        args.videos, args.frames_per_video, args.alone_videos = 3, 16, 1
    setup_logging("WARNING")
    cores = sorted(os.sched_getaffinity(0))[: args.cpus]
    os.sched_setaffinity(0, cores)
    pose = ["pose.backend=precomputed"] if args.pose == "precomputed" else []
    threads = [f"pose.threads={len(cores)}"] if args.pose == "config" else []
    cfg = load_config(PreprocessConfig, args.config, [*pose, *threads, *args.overrides])
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "videos", Path(tmp) / "out"
        folder.mkdir()
        start = time.perf_counter()
        videos = build_corpus(
            str(Path(args.source).resolve()), folder, args.videos, args.frames_per_video,
            sidecars=args.pose == "precomputed",
        )  # fmt: skip
        print(
            f"corpus: {len(videos)} videos of {args.frames_per_video} frames cut from "
            f"{args.source} ({time.perf_counter() - start:.0f} s); pinned to cores {cores}; "
            f"load average {load_start:.1f}"
        )
        alone_videos = videos[: max(1, args.alone_videos)]
        n_alone, before = stages_alone(alone_videos, cfg)
        models = {s.name for s in STAGES if s.is_model}
        print(f"each stage alone on {n_alone} stored frames: CPU ms per stored frame")
        print("  before the job: " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in before.items()))

        driver_cpu = cpu_seconds()
        with WorkerMemory() as memory:
            summary = run_ray(videos, out, cfg)
        driver_cpu = cpu_seconds() - driver_cpu - memory.cpu_s  # the sampler is not the job
        if summary.status.get("ok", 0) != len(videos):  # figures of a broken run mean nothing
            raise SystemExit(f"not every video was processed:\n{summary.format()}")
        # Again after the job: this machine's speed drifts over minutes (other tenants), so
        # the bound is the mean of both sides of the run, and their spread is printed.
        _, after = stages_alone(alone_videos, cfg)
        print("  after the job:  " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in after.items()))
        alone = {k: (before[k] + after[k]) / 2 for k in before}
        total = sum(alone.values())
        outside = sum(v for k, v in alone.items() if k not in models)
        bound = len(cores) / total
        spread = abs(sum(before.values()) - sum(after.values())) / total
        print(
            f"  mean: outside the models ({' + '.join(k for k in alone if k not in models)}) "
            f"{1000 * outside:.1f} ms; all stages {1000 * total:.1f} ms (before and after "
            f"differ by {100 * spread:.0f} %) -> CPU bound {bound:.1f} frames/s on "
            f"{len(cores)} cores"
        )
        if spread > 0.15:
            print("  WARNING: the machine's speed changed during the run: efficiency unreliable")
        frames = summary.frames
        rate = frames / summary.wall_seconds
        shard_bytes = sum(p.stat().st_size for p in (out / "shards").glob("*.tar"))
        fields = field_bytes(sorted((out / "shards").glob("*.tar")))
        print(f"Ray job: {summary.format()}")
        print(
            f"end to end {rate:.1f} frames/s (start-up included) ÷ CPU bound {bound:.1f} = "
            f"pipeline efficiency {rate / bound:.2f}"
        )
        ratio = summary.store_ratio() if hasattr(summary, "store_ratio") else 0.0
        print(
            f"per stored frame: driver CPU {1000 * driver_cpu / max(1, frames):.2f} ms, "
            f"driver bytes {per_frame(summary, 'driver_bytes', frames)}, "
            f"object-store bytes ÷ raw frame "
            f"{f'{ratio:.2f}' if getattr(summary, 'raw_bytes', 0) else 'n/a'}, "
            f"shard bytes {shard_bytes / max(1, frames):.0f}"
        )
        print(
            "  shard bytes per stored frame by field: "
            + ", ".join(f"{k} {v / max(1, frames):.0f}" for k, v in fields.items())
        )
        inside = getattr(summary, "stage_seconds", {})
        print(
            "inside the run, stage seconds per stored frame (wall, summed over workers): "
            + ", ".join(f"{k} {1000 * v / max(1, frames):.1f} ms" for k, v in inside.items())
        )
        print("peak unique memory (USS) per Ray worker:")
        for pid, peak in sorted(memory.peak.items(), key=lambda kv: -kv[1])[:12]:
            ran = " + ".join(sorted(memory.names[pid])) or "IDLE"
            print(f"  {peak / 2**20:8.0f} MiB  {ran}")
        print(f"  {memory.driver_peak / 2**20:8.0f} MiB  driver (this process)")
    print(f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
