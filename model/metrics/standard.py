"""The paper's unified evaluation standard (appendix C.2): every frame is centre-cropped to
its largest centred square and resized to ``size`` x ``size`` (512 by default), for the real
and the generated frames alike; video metrics see consecutive non-overlapping ``clip_len``
frame segments (16) of every clip, and a clip's last frames that do not fill a segment are
left out of the video metrics (counted in the report, never padded)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Standard:
    """How frames are brought to a common size before scoring."""

    size: int = 512
    """Side of the square every frame is centre-cropped and resized to."""
    clip_len: int = 16
    """Frames per segment of the video metrics (FID-VID, FVD)."""

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "crop": "centre square", "resize": "area down / cubic up"}


def centre_square(frames: np.ndarray) -> tuple[int, int, int]:
    """(y0, x0, side) of the largest centred square of (…, H, W, C) frames."""
    h, w = frames.shape[-3:-1]
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def unify(frames: np.ndarray, standard: Standard) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, S, S, 3) uint8: centre square crop, then resize to S
    (OpenCV area interpolation when shrinking, bicubic when enlarging)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    y0, x0, side = centre_square(frames)
    s = standard.size
    crop = frames[:, y0 : y0 + side, x0 : x0 + side]
    if side == s:
        return np.ascontiguousarray(crop)
    mode = cv2.INTER_AREA if side > s else cv2.INTER_CUBIC
    return np.stack([cv2.resize(np.ascontiguousarray(f), (s, s), interpolation=mode) for f in crop])


def segments(frames: np.ndarray, clip_len: int) -> list[np.ndarray]:
    """Consecutive non-overlapping ``clip_len``-frame segments of (T, ...) frames (the tail
    shorter than ``clip_len`` is dropped)."""
    return [frames[i : i + clip_len] for i in range(0, len(frames) - clip_len + 1, clip_len)]
