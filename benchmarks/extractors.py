"""Throughput of the paper's extractors: frames/s per backend and batch size.

    .venv/bin/python benchmarks/extractors.py [--frames 16] [--short-side 640] [--skip-gpu]
    .venv/bin/python benchmarks/extractors.py --quick   # seconds: a smoke run of the CPU rows

CPU section: the backends' real code (pre-processing, batching, decoding, resizing) on
**tiny stand-in weights** (:mod:`preprocess.standins`, the tests' stand-ins): a YOLOX
detector and a DWPose model with the public files' I/O but almost no compute, a narrow PWC-Net
checkpoint in MMFlow's key names, a 4-layer Depth Anything. These rows measure the code
around the networks, not the networks; they are labelled ``stand-in``. OpenCV DIS (real, no
weights) is the reference row.

GPU section (only when torch sees CUDA): the real-size architectures with random weights at
short side 640: MMFlow's PWC-Net (9.37 M parameters) and Depth Anything V1 Small (Dinov2-S/14
backbone, the hub config's sizes); DWPose with the public ONNX files when they are in
$MCANIM_WEIGHTS (their architectures cannot be rebuilt here without mmdet/mmpose).
Frames come from the real vtest.avi (``$MCANIM_ASSETS``, :func:`preprocess.weights.assets_dir`),
resized to ``--short-side``. The tables go to stdout (markdown), for docs/extractors.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from preprocess.config import DepthConfig, FlowConfig, PoseConfig
from preprocess.depth import create_depth_backend
from preprocess.flow import create_flow_backend
from preprocess.geometry import map_size
from preprocess.pose import create_pose_backend
from preprocess.standins import (
    TINY_PWCNET,
    planted_head,
    write_depth_anything,
    write_dwpose_onnx,
    write_pwcnet_checkpoint,
    write_yolox_onnx,
)
from preprocess.weights import assets_dir
from shards.video import read_video

QUICK = ["--frames", "2", "--short-side", "128", "--batches", "2", "--skip-gpu"]
"""``--quick``: a smoke run (a few seconds) that exercises every CPU row."""


def frames_at(short_side: int, n: int) -> np.ndarray:
    """``n`` frames of vtest.avi resized to ``short_side``: (n, H, W, 3) uint8 RGB."""
    video = assets_dir() / "videos" / "vtest.avi"
    if not video.is_file():
        raise SystemExit(f"{video} not found: set MCANIM_ASSETS to the shared assets folder")
    frames, _ = read_video(video, max_frames=n)  # (n, H, W, 3)
    h, w = frames.shape[1:3]
    s = short_side / min(h, w)
    size = (round(w * s / 2) * 2, round(h * s / 2) * 2)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def rate(
    fn: Callable[..., object], *args: object, n: int, sync: Callable[[], object] | None = None
) -> float:
    """Frames/s of ``fn(*args)`` over ``n`` frames: best of 2 runs after a warm-up."""

    def once() -> float:
        start = time.perf_counter()
        fn(*args)
        if sync is not None:
            sync()
        return time.perf_counter() - start

    once()  # warm-up (session/graph init, allocator)
    return n / min(once() for _ in range(2))


def row(backend: str, weights: str, device: str, batch: int | str, fps: float) -> None:
    print(f"| {backend} | {weights} | {device} | {batch} | {fps:.1f} |")


def cpu_section(frames: np.ndarray, tmp: Path, batches: list[int]) -> None:
    t, h, w = frames.shape[:3]
    msize = map_size(h, w, 4)
    boxes = [(200.0, 300.0, 120.0, 300.0, 0.9, 0), (470.0, 330.0, 120.0, 300.0, 0.8, 0)]
    det = write_yolox_onnx(tmp / "yolox.onnx", planted_head((640, 640), boxes))
    pose = write_dwpose_onnx(tmp / "dw.onnx")
    pwc = write_pwcnet_checkpoint(tmp / "pwc.pth", TINY_PWCNET)
    depth = write_depth_anything(tmp / "da")
    print(f"\nCPU, {t} frames {w}x{h} (vtest), maps {msize[1]}x{msize[0]}")
    print("| backend | weights | device | batch | frames/s |\n|---|---|---|---|---|")
    dis = create_flow_backend(FlowConfig(backend="dis", preset="medium"))
    row(
        "flow dis (medium)",
        "none (real)",
        "cpu",
        "-",
        rate(dis.clip_flow, frames, msize, n=t),
    )
    for b in batches:
        cfg = PoseConfig(backend="dwpose", detector=str(det), model=str(pose), device="cpu")
        cfg.batch_size = b
        dw = create_pose_backend(cfg)
        row(
            "pose dwpose (2 people/frame)",
            "stand-in",
            "cpu",
            b,
            rate(dw.detect_frames, frames, n=t),
        )
    for b in batches:
        fl = create_flow_backend(
            FlowConfig(backend="pwcnet", weights=str(pwc), device="cpu", batch_size=b)
        )
        row("flow pwcnet", "stand-in", "cpu", b, rate(fl.clip_flow, frames, msize, n=t - 1))
    for b in batches:
        dep = create_depth_backend(
            DepthConfig(backend="depth_anything", model=str(depth), device="cpu", batch_size=b)
        )
        row(
            "depth depth_anything",
            "stand-in",
            "cpu",
            b,
            rate(dep.clip_depth, frames, msize, n=t),
        )


def gpu_section(frames: np.ndarray, tmp: Path, batches: list[int]) -> None:
    import torch

    from preprocess.weights import entry_path

    t, h, w = frames.shape[:3]
    msize = map_size(h, w, 4)
    name = torch.cuda.get_device_name(0)
    print(
        f"\nGPU {name}, {t} frames {w}x{h}, maps {msize[1]}x{msize[0]}; real-size, random weights"
    )
    print("| backend | weights | device | batch | frames/s |\n|---|---|---|---|---|")
    pwc = write_pwcnet_checkpoint(tmp / "pwc_full.pth")  # MMFlow's full PWC-Net, random
    for b in batches:
        fl = create_flow_backend(
            FlowConfig(backend="pwcnet", weights=str(pwc), device="cuda", batch_size=b)
        )
        row(
            "flow pwcnet (9.37 M)",
            "random",
            "cuda",
            b,
            rate(fl.clip_flow, frames, msize, n=t - 1, sync=torch.cuda.synchronize),
        )
    da = write_depth_anything(tmp / "da_small", size="small")
    for b in batches:
        dep = create_depth_backend(
            DepthConfig(backend="depth_anything", model=str(da), device="cuda", batch_size=b)
        )
        row(
            "depth depth_anything small fp16",
            "random",
            "cuda",
            b,
            rate(dep.clip_depth, frames, msize, n=t),
        )
    det, model = entry_path("dwpose", "yolox_l.onnx"), entry_path("dwpose", "dw-ll_ucoco_384.onnx")
    if det.is_file() and model.is_file():
        for b in batches:
            cfg = PoseConfig(backend="dwpose", detector=str(det), model=str(model), device="cuda")
            cfg.batch_size = b
            dw = create_pose_backend(cfg)
            row("pose dwpose", "public", "cuda", b, rate(dw.detect_frames, frames, n=t))
    else:
        print(f"(dwpose skipped: the public ONNX files are not in {det.parent})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16, help="vtest frames timed")
    parser.add_argument("--short-side", type=int, default=640, help="frames resized to this")
    parser.add_argument("--batches", default="1,4,8,16", help="batch sizes, comma-separated")
    parser.add_argument("--skip-gpu", action="store_true", help="no GPU section even with CUDA")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {' '.join(QUICK)}")
    args = parser.parse_args(argv)
    if args.quick:
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), *QUICK])
    import torch

    batches = [int(b) for b in args.batches.split(",")]
    frames = frames_at(args.short_side, args.frames)
    with tempfile.TemporaryDirectory() as d:
        cpu_section(frames, Path(d), batches)
        if torch.cuda.is_available() and not args.skip_gpu:
            gpu_section(frames, Path(d), batches)
        else:
            print("\n(no CUDA GPU: the real-size GPU section did not run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
