"""``depth.backend=depth_anything``: Depth Anything through transformers, batched.

``depth.model`` is a local folder (``config.json``, weights, ``preprocessor_config.json``) or a
hub id; empty means the weights manager's folder when it has been fetched
(``$MCANIM_WEIGHTS/depth_anything/depth-anything-small-hf``), else the hub id
``LiheYoung/depth-anything-small-hf`` (Depth Anything V1 Small, the paper's model family;
``depth-anything/Depth-Anything-V2-Small-hf`` loads the same way). A hub id is looked up in the
local Hugging Face cache first; it is downloaded only when the hub is reachable and
``HF_HUB_OFFLINE`` is unset, otherwise the error names what is missing.

Device: ``depth.device`` through PyTorch (``.device``); ``.dtype`` is float16 on CUDA when
``depth.fp16``, else float32.

Per clip: the image processor stored with the model prepares every frame (transformers'
``DPTImageProcessor`` semantics: target 518 x 518, aspect kept by scaling as little as possible,
sides rounded to multiples of 14, bicubic, ImageNet mean/std), ``depth.batch_size`` frames per
forward pass (float16 on CUDA when ``depth.fp16``), and the predicted relative inverse depth
(larger = nearer) is resized (bilinear, antialiased) to the map resolution and min-max
normalised per frame to [0, 1] (a constant frame becomes 0). Ranks then follow docs/design.md §3 from
this map (``preprocess.geometry``: mean depth over each character's exclusive region).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from preprocess.config import DepthConfig
from preprocess.depth.base import DEPTH_BACKENDS, DepthBackend
from preprocess.weights import entry_path, sha256_file

log = logging.getLogger(__name__)

DEFAULT_HUB_ID = "LiheYoung/depth-anything-small-hf"
DEPTH_HOWTO = (
    "Run `python -m preprocess.weights fetch depth_anything` on a machine with network (it "
    "lands in $MCANIM_WEIGHTS/depth_anything/), or copy a Depth Anything folder "
    "(config.json, model.safetensors, preprocessor_config.json, e.g. from the hub repo "
    f"{DEFAULT_HUB_ID}) and set depth.model to it."
)


def resolve_model(model: str) -> tuple[str, bool]:
    """(folder or hub id, is a local folder) for ``depth.model`` ('' = the default)."""
    if not model:
        fetched = entry_path("depth_anything")
        return (str(fetched), True) if fetched.is_dir() else (DEFAULT_HUB_ID, False)
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), True
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise FileNotFoundError(
            f"depth model folder {model!r} (config key depth.model) does not exist. {DEPTH_HOWTO}"
        )
    return model, False


def load_depth_anything(model: str) -> tuple[Any, Any, str]:
    """(image processor, model, what was loaded) from a folder or a hub id."""
    from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

    source, local = resolve_model(model)
    offline = local or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        try:  # a hub id: the local cache first, so an offline machine never waits on the network
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=True)
            net = DepthAnythingForDepthEstimation.from_pretrained(source, local_files_only=True)
        except OSError:
            if offline:
                raise
            processor = AutoImageProcessor.from_pretrained(source)
            net = DepthAnythingForDepthEstimation.from_pretrained(source)
    except OSError as err:
        where = f"folder {source!r}" if local else f"hub id {source!r} (not in the local cache)"
        raise FileNotFoundError(
            f"cannot load the Depth Anything {where} (config key depth.model): {err}. {DEPTH_HOWTO}"
        ) from None
    return processor, net.eval(), source


def normalise_per_frame(depth: np.ndarray) -> np.ndarray:
    """(T, h, w) -> float32 min-max normalised to [0, 1] per frame (constant frames -> 0)."""
    d = depth.astype(np.float32)
    lo = d.min(axis=(1, 2), keepdims=True)
    span = d.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (d - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


@DEPTH_BACKENDS.register("depth_anything")
class DepthAnythingDepth(DepthBackend):
    """Relative inverse depth from Depth Anything, at the map resolution, per frame in [0, 1]."""

    name = "depth_anything"
    runtime = "torch"

    def __init__(self, cfg: DepthConfig) -> None:
        super().__init__(cfg)
        import torch

        if cfg.batch_size < 1:
            raise ValueError(f"depth.batch_size must be >= 1, got {cfg.batch_size}")
        self.processor, net, self.source = load_depth_anything(cfg.model)
        self.dtype = torch.float16 if self.device.startswith("cuda") and cfg.fp16 else torch.float32
        self.net: Any = net.to(self.device, self.dtype)
        self._torch = torch
        log.info("Depth Anything %s on %s (%s)", self.source, self.device, self.dtype)

    def predict(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB -> (B, h, w) float32 raw inverse depth at ``map_size``."""
        torch = self._torch
        import torch.nn.functional as F

        inputs = self.processor(images=list(frames), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)  # (B, 3, h', w')
        with torch.inference_mode():
            depth = self.net(pixel_values=pixels).predicted_depth  # (B, h', w')
            small = F.interpolate(
                depth[:, None].float(), size=map_size, mode="bilinear", antialias=True
            )
        return small[:, 0].cpu().numpy()

    def clip_depth(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.shape}")
        step = self.cfg.batch_size
        raw = [self.predict(frames[s : s + step], map_size) for s in range(0, len(frames), step)]
        return normalise_per_frame(np.concatenate(raw))  # (T, h, w)

    def model_file(self) -> str:
        return self.source if Path(self.source).is_dir() else ""  # a folder: no sha256 of its own

    def identity_extras(self) -> dict[str, object]:
        weights = Path(self.source) / "model.safetensors"
        return {
            "hub_id": None if Path(self.source).is_dir() else self.source,
            "weights_sha256": sha256_file(weights) if weights.is_file() else None,
        }
