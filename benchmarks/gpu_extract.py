"""Extraction sections of ``benchmarks/gpu_check.py``: frames/s at the stored size (short side 640).

- ``extract.flow_pwcnet``: the flow backend (``flow.backend=pwcnet``, our torch port of MMFlow's
  PWC-Net, full size, random weights) per ``flow.batch_size``.
- ``extract.depth_anything``: Depth Anything S/B/L built from transformers configs (random
  weights, fp16 on CUDA) on the image processor's input size, per batch; and the whole
  backend (processor + network + resize, ``depth.backend=depth_anything``) with Small.
- ``extract.pose_onnx2torch``, ``extract.pose_onnxruntime``: :mod:`gpu_pose` (re-exported).
- ``extract.fused``: ``preprocess.fused.FusedExtractors`` when that module exists, else pose
  (onnxruntime, CPU) -> flow -> depth (device) in sequence over one clip, said in the row.

Frames: vtest.avi from the assets folder (read with OpenCV: PyAV is not on the GPU machine),
else a synthetic moving texture, resized to the short side. Each function fills a
:class:`gpu_common.Section` and stops early when its :class:`gpu_common.Clock` runs out.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from gpu_common import (
    Busy,
    Clock,
    Row,
    Section,
    Sizes,
    free_memory,
    peak_gib,
    reset_peak,
    timed,
)
from gpu_pose import pose_onnx2torch, pose_onnxruntime, stand_in_modules

log = logging.getLogger("gpu_check.extract")
__all__ = ["Env", "depth_anything", "flow_pwcnet", "fused", "pose_onnx2torch", "pose_onnxruntime"]

DEPTH_CONFIGS = {  # hidden, layers, heads, reassemble, neck, fusion, head, out_indices (hub)
    "tiny": (16, 4, 2, 16, (8, 8, 16, 16), 8, 8, (1, 2, 3, 4)),
    "small": (384, 12, 6, 384, (48, 96, 192, 384), 64, 32, (9, 10, 11, 12)),
    "base": (768, 12, 12, 768, (96, 192, 384, 768), 128, 32, (9, 10, 11, 12)),
    "large": (1024, 24, 16, 1024, (256, 512, 1024, 1024), 256, 32, (5, 12, 18, 24)),
}
"""Depth Anything V1 sizes as in the hub configs (LiheYoung/depth-anything-{small,base,large}-hf)."""


@dataclass
class Env:
    """What the sections share: a scratch folder, the assets folder, the frames."""

    tmp: Path
    assets: Path
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB at the short side
    source: str


def load_frames(assets: Path, short_side: int, count: int) -> tuple[np.ndarray, str]:
    """``count`` frames (T, H, W, 3) uint8 RGB at ``short_side``: vtest.avi, else synthetic."""
    video = assets / "videos" / "vtest.avi"
    frames: list[np.ndarray] = []
    if video.is_file():
        cap = cv2.VideoCapture(str(video))
        while len(frames) < count:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
    if len(frames) == count:
        source = f"vtest.avi ({frames[0].shape[1]}x{frames[0].shape[0]})"
    else:  # a smooth texture moving 2 px right and 1 px down per frame
        rng = np.random.default_rng(0)
        base = cv2.resize(rng.integers(0, 256, (72, 96, 3), np.uint8), (960, 720))
        frames = [np.roll(base, (i, 2 * i), axis=(0, 1)) for i in range(count)]
        source = f"synthetic (no {video})"
    h, w = frames[0].shape[:2]
    s = short_side / min(h, w)
    size = (round(w * s / 2) * 2, round(h * s / 2) * 2)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]), source


def map_hw(frames: np.ndarray) -> tuple[int, int]:
    from preprocess.geometry import map_size

    return map_size(frames.shape[1], frames.shape[2], 4)


# ---- flow -----------------------------------------------------------------------------------
def flow_pwcnet(sec: Section, sizes: Sizes, clock: Clock, env: Env) -> None:
    from preprocess.config import FlowConfig
    from preprocess.flow import create_flow_backend
    from preprocess.standins import TINY_PWCNET, write_pwcnet_checkpoint

    dev = sizes.device
    weights = write_pwcnet_checkpoint(
        env.tmp / "pwc.pth", None if sizes.pwcnet == "full" else TINY_PWCNET
    )
    label = "flow pwcnet (9.37 M)" if sizes.pwcnet == "full" else "flow pwcnet (tiny)"
    for b in sizes.batches:
        frames = env.frames[: b + 1]  # b pairs: one forward pass per clip
        if not clock.fits(5.0):
            sec.skip_item(f"{label} batch {b}", "section time limit")
            continue
        backend = create_flow_backend(
            FlowConfig(backend="pwcnet", weights=str(weights), device=dev, batch_size=b)
        )
        reset_peak(dev)
        with Busy(dev) as busy:
            seconds = timed(partial(backend.clip_flow, frames, map_hw(frames)), dev, sizes.repeats)
        sec.add(Row(label, b / seconds, "pairs/s", b, dev, busy.value, peak_gib(dev)))
        del backend
        free_memory(dev)


# ---- depth ----------------------------------------------------------------------------------
def depth_model(size: str, device: str) -> Any:
    """A random ``DepthAnythingForDepthEstimation`` of ``size`` (:data:`DEPTH_CONFIGS`) built on
    ``device`` (fp16 on CUDA, as ``depth.fp16``)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    hidden, layers, heads, reassemble, neck, fusion, head, taps = DEPTH_CONFIGS[size]
    stages: dict[str, Any] = {"out_features": [f"stage{i}" for i in taps]}
    backbone = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        patch_size=14,
        image_size=518,
        reshape_hidden_states=False,
        **stages,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=reassemble,
        neck_hidden_sizes=list(neck),
        fusion_hidden_size=fusion,
        head_hidden_size=head,
    )
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        net: Any = DepthAnythingForDepthEstimation(cfg)
        return net.to(dtype).eval(), dtype


def depth_anything(sec: Section, sizes: Sizes, clock: Clock, env: Env) -> None:
    import torch
    from transformers import AutoImageProcessor

    from preprocess.config import DepthConfig
    from preprocess.depth import create_depth_backend
    from preprocess.standins import write_depth_anything

    dev = sizes.device
    frames = env.frames
    standin: Literal["tiny", "small"] = "small" if "small" in sizes.depth_sizes else "tiny"
    side = 518 if standin == "small" else 56
    folder = write_depth_anything(env.tmp / f"da_{standin}", size=standin, input_side=side)
    for b in sizes.batches:  # the whole backend: processor (CPU) + network + resize
        if not clock.fits(8.0):
            sec.skip_item(f"depth backend {standin} batch {b}", "section time limit")
            continue
        cfg = DepthConfig(backend="depth_anything", model=str(folder), device=dev, batch_size=b)
        backend = create_depth_backend(cfg)
        reset_peak(dev)
        with Busy(dev) as busy:
            clip = partial(backend.clip_depth, frames[:b], map_hw(frames))
            seconds = timed(clip, dev, sizes.repeats)
        row = Row(f"depth backend {standin}", b / seconds, "frames/s", b, dev, busy.value)
        row.peak_gib, row.note = peak_gib(dev), "processor + network + resize"
        sec.add(row)
        del backend
    processor = AutoImageProcessor.from_pretrained(str(folder))
    h, w = processor(images=list(frames[:1]), return_tensors="pt")["pixel_values"].shape[-2:]
    for size in sizes.depth_sizes:  # the network alone at the processor's input size
        if not clock.fits(15.0):
            sec.skip_item(f"depth_anything {size} network", "section time limit")
            continue
        net, dtype = depth_model(size, dev)
        for b in sizes.batches:
            if not clock.fits(4.0):
                sec.skip_item(f"depth_anything {size} network batch {b}", "section time limit")
                continue
            pixels = torch.randn(b, 3, h, w, device=dev, dtype=dtype)  # (B, 3, h, w)
            reset_peak(dev)

            def run(net: Any = net, pixels: torch.Tensor = pixels) -> None:
                with torch.inference_mode():
                    net(pixel_values=pixels)

            with Busy(dev) as busy:
                seconds = timed(run, dev, sizes.repeats)
            note = f"input {w}x{h}, {str(dtype).removeprefix('torch.')}"
            sec.add(
                Row(
                    f"depth_anything {size} network",
                    b / seconds,
                    "frames/s",
                    b,
                    dev,
                    busy.value,
                    peak_gib(dev),
                    note,
                )
            )
        del net
        free_memory(dev)


# ---- fused ----------------------------------------------------------------------------------
def import_fused() -> tuple[Any, str]:
    """(``preprocess.fused`` or None, a note on how it was imported or why not)."""
    if importlib.util.find_spec("preprocess.fused") is None:
        return None, "preprocess.fused absent"
    try:
        from preprocess import fused as module
    except ImportError as exc:
        first = f"preprocess.fused needs {exc.name} at import"
    else:
        return module, "preprocess.fused.FusedExtractors"
    with stand_in_modules("decord", "av") as stood_in:
        try:
            from preprocess import fused as module
        except ImportError as exc:
            return None, f"{first}; with stand-ins for {stood_in} still {exc}"
    return module, f"{first}: imported with stand-ins for {stood_in} (frames are in memory)"


def fused(sec: Section, sizes: Sizes, clock: Clock, env: Env) -> None:
    """``preprocess.fused.FusedExtractors`` on one clip when it imports, else the three
    backends in sequence (pose on the CPU through onnxruntime, flow and depth on the device)."""
    from preprocess.config import DepthConfig, FlowConfig, PoseConfig, PreprocessConfig
    from preprocess.standins import TINY_PWCNET, write_depth_anything, write_pwcnet_checkpoint

    dev = sizes.device
    batch = max(sizes.batches)
    frames = env.frames[: batch + 1]
    pwc = write_pwcnet_checkpoint(
        env.tmp / "pwc_fused.pth", None if sizes.pwcnet == "full" else TINY_PWCNET
    )
    standin: Literal["tiny", "small"] = "small" if "small" in sizes.depth_sizes else "tiny"
    da = write_depth_anything(
        env.tmp / "da_fused", size=standin, input_side=518 if standin == "small" else 56
    )
    multipose = env.assets / "models" / "movenet_multipose.onnx"
    cfg = PreprocessConfig(
        pose=PoseConfig(
            backend="movenet", model=str(multipose), device="cpu", threads=sizes.threads
        ),
        flow=FlowConfig(backend="pwcnet", weights=str(pwc), device=dev, batch_size=batch),
        depth=DepthConfig(backend="depth_anything", model=str(da), device=dev, batch_size=batch),
    )
    if not multipose.is_file():
        cfg.pose.backend = "precomputed"  # no model to run: the stage is skipped
        sec.notes.append(f"no {multipose}: no pose model in the chain")
    module, how = import_fused()
    sec.notes.append(how)
    stages: list[tuple[str, Any]]
    if module is not None:
        extract = module.FusedExtractors(cfg)
        stages = [("fused " + "+".join(extract.names), lambda: extract(frames))]
    else:
        stages = sequential_stages(cfg, frames)
    for _, fn in stages:  # warm-up
        fn()
    split = []
    reset_peak(dev)
    with Busy(dev) as busy:
        start = time.perf_counter()
        for label, fn in stages:
            t0 = time.perf_counter()
            fn()
            split.append(f"{label} {time.perf_counter() - t0:.2f} s")
        seconds = time.perf_counter() - start
    item = "fused extractors" if module is not None else "pose -> flow -> depth (sequential)"
    row = Row(item, len(frames) / seconds, "frames/s", batch, dev, busy.value, peak_gib(dev))
    row.note = f"pose cpu (onnxruntime), flow + depth {dev}; " + ", ".join(split)
    sec.add(row)


def sequential_stages(cfg: Any, frames: np.ndarray) -> list[tuple[str, Any]]:
    """The three backends of ``cfg`` as (label, run over ``frames``) in pipeline order."""
    from preprocess.depth import create_depth_backend
    from preprocess.flow import create_flow_backend
    from preprocess.pose import create_pose_backend

    msize = map_hw(frames)
    stages: list[tuple[str, Any]] = []
    if cfg.pose.backend == "movenet":
        pose = create_pose_backend(cfg.pose)
        stages.append(("pose movenet", lambda: pose.detect_frames(frames)))
    flow = create_flow_backend(cfg.flow)
    depth = create_depth_backend(cfg.depth)
    stages.append(("flow pwcnet", lambda: flow.clip_flow(frames, msize)))
    stages.append(("depth_anything", lambda: depth.clip_depth(frames, msize)))
    return stages
