"""``pose.backend=precomputed``: keypoints read from a sidecar file next to each video.

Sidecar path: the video's path without its extension + ``pose.sidecar_suffix`` (default
``.pose.npz``): ``/data/a/clip01.mp4`` -> ``/data/a/clip01.pose.npz`` (``s3://`` URIs work
the same way, read through ``shards.storage``). Format, an ``.npz`` read with
``allow_pickle=False``:

- ``keypoints``: float32 ``[N_source_frames, P, K, 3]`` with K = 17 (COCO body) or 133
  (COCO-WholeBody), (x, y, score) in the source video's *displayed* pixel coordinates (after
  rotation), score 0 = absent, indexed by source frame (frame 0 = the first decoded frame).
- ``tracked`` (optional 0-d bool, default true): person index p is the same person in every
  frame, so tracking is skipped; false: each frame's people are independent detections and
  :func:`~preprocess.pose.tracking.track` links them.

For a clip, rows ``clip.source_frames`` are taken, scaled to stored pixels, padded to 133
points; with ``tracked`` people absent from the whole clip are dropped (order kept).

No model runs: ``pose.device`` may be ``auto`` or ``cpu`` only.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np

from preprocess.clip import Clip
from preprocess.config import PoseConfig
from preprocess.geometry.layout import pad_to_wholebody
from preprocess.pose.base import POSE_BACKENDS, PoseBackend
from preprocess.pose.tracking import track
from shards.storage import atomic_path, read_bytes

log = logging.getLogger(__name__)

VALID_K = (17, 133)


def sidecar_path(source: str, suffix: str = ".pose.npz") -> str:
    """The sidecar of a video path or URI: path without extension + ``suffix``."""
    cut = source.rfind("/") + 1
    return source[:cut] + os.path.splitext(source[cut:])[0] + suffix


def _check_keypoints(keypoints: np.ndarray, where: str) -> None:
    if keypoints.ndim != 4 or keypoints.shape[-1] != 3 or keypoints.shape[-2] not in VALID_K:
        raise ValueError(
            f"{where}: keypoints must be [N_frames, P, K, 3] with K in {VALID_K}, "
            f"got shape {keypoints.shape}"
        )


def write_sidecar(path: str | Path, keypoints: np.ndarray, tracked: bool = True) -> Path:
    """Write a sidecar atomically (temporary name, then rename). Returns its path."""
    keypoints = np.asarray(keypoints, np.float32)
    _check_keypoints(keypoints, str(path))
    path = Path(path)
    with atomic_path(str(path)) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, keypoints=keypoints, tracked=np.array(bool(tracked)))
    return path


def read_sidecar(path: str) -> tuple[np.ndarray, bool]:
    """(keypoints float32 [N, P, K, 3], tracked) from a sidecar path or URI."""
    data = _read_bytes(path)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        if "keypoints" not in npz.files:
            raise ValueError(f"pose sidecar {path} has no 'keypoints' array (has {npz.files})")
        keypoints = np.asarray(npz["keypoints"], np.float32)
        tracked = bool(npz["tracked"]) if "tracked" in npz.files else True
    _check_keypoints(keypoints, f"pose sidecar {path}")
    return keypoints, tracked


def _read_bytes(path: str) -> bytes:
    try:
        return read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(_missing(path)) from None


def _missing(path: str) -> str:
    return (
        f"pose sidecar {path} not found: pose.backend=precomputed needs one .npz next to each "
        "video (the video's path without extension + pose.sidecar_suffix; see docs/pose.md)"
    )


@POSE_BACKENDS.register("precomputed")
class PrecomputedBackend(PoseBackend):
    """Keypoints from per-video sidecars (see the module docstring for the format)."""

    name = "precomputed"

    def __init__(self, cfg: PoseConfig) -> None:
        super().__init__(cfg)
        self._cached: tuple[str, np.ndarray, bool] | None = None

    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError(
            "pose.backend=precomputed reads keypoints from a video's sidecar file and cannot "
            "detect people in bare frames; call clip_keypoints(clip) or use pose.backend=movenet"
        )

    def _load(self, source: str) -> tuple[np.ndarray, bool]:
        path = sidecar_path(source, self.cfg.sidecar_suffix)
        if self._cached is None or self._cached[0] != path:  # clips of a video come in a row
            self._cached = (path, *read_sidecar(path))
            log.debug("loaded pose sidecar %s %s", path, self._cached[1].shape)
        return self._cached[1], self._cached[2]

    def clip_keypoints(self, clip: Clip) -> np.ndarray:
        keypoints, tracked = self._load(clip.video.source)
        frames = np.asarray(clip.source_frames, np.int64)
        if len(frames) and (frames.min() < 0 or frames.max() >= keypoints.shape[0]):
            raise ValueError(
                f"pose sidecar of {clip.video.source} has {keypoints.shape[0]} frames; "
                f"the clip needs source frames {int(frames.min())}..{int(frames.max())}"
            )
        selected = pad_to_wholebody(keypoints[frames])  # (T, P, 133, 3)
        selected[..., 0] *= clip.video.width / clip.video.src_width  # source px -> stored px
        selected[..., 1] *= clip.video.height / clip.video.src_height
        selected[selected[..., 2] <= 0] = 0.0  # absent points carry no coordinates
        if not tracked:
            return track([people[people[..., 2].max(-1) > 0] for people in selected], self.cfg)
        present = selected[..., 2].max(axis=(0, 2)) > 0  # (P,) seen somewhere in the clip
        return np.ascontiguousarray(selected[:, present])

    def model_file(self) -> str:
        return ""  # keypoints come from files next to the videos, not from weights

    def identity_extras(self) -> dict[str, object]:
        return {"sidecar_suffix": self.cfg.sidecar_suffix}
