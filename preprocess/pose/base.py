"""Pose backend interface and its name -> class registry.

A backend turns a clip into tracked whole-body keypoints ``(T, P, 133, 3)`` (DESIGN §3).
Model backends load their weights once in ``__init__`` (inside a Ray actor in a cluster run)
and implement :meth:`PoseBackend.detect_frames`; the default :meth:`PoseBackend.clip_keypoints`
then drops fragments and duplicates (:mod:`preprocess.pose.cleanup`) and links the per-frame
detections into tracks with :func:`preprocess.pose.tracking.track`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from preprocess.clip import Clip
from preprocess.config import PoseConfig
from preprocess.pose.cleanup import clean_detections
from preprocess.pose.tracking import track
from preprocess.registry import Registry
from preprocess.weights_id import backend_identity

POSE_BACKENDS: Registry[PoseBackend] = Registry("pose")


class PoseBackend(ABC):
    """Multi-person whole-body pose of a clip, in the COCO-WholeBody 133 layout."""

    name: ClassVar[str]

    def __init__(self, cfg: PoseConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        """Untracked people of every frame.

        ``frames``: (T, H, W, 3) uint8 RGB. Returns T arrays (N_i, 133, 3) float32 of
        (x, y, score) in the frames' pixel coordinates. Backends with fewer points fill the
        first ones and leave the rest at 0.
        """

    def people(self, frames: np.ndarray) -> list[np.ndarray]:
        """:meth:`detect_frames` without limb fragments and duplicates (``pose.cleanup``)."""
        return [clean_detections(p, self.cfg) for p in self.detect_frames(frames)]

    def track_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB -> tracked keypoints (T, P, 133, 3) float32, frame pixels."""
        return track(self.people(frames), self.cfg)

    def clip_keypoints(self, clip: Clip) -> np.ndarray:
        """Tracked keypoints (T, P, 133, 3) float32 in stored pixels; P = tracks in the clip."""
        return self.track_frames(clip.frames)

    def identity(self) -> dict[str, object]:
        """``{"name", "model", "sha256"}``: recorded in every clip's metadata."""
        return backend_identity(self.name, self.cfg.model)


def register_pose_backend(name: str) -> Callable[[type[PoseBackend]], type[PoseBackend]]:
    """Class decorator: make a backend available as ``pose.backend=<name>``."""
    return POSE_BACKENDS.register(name)


def available_pose_backends() -> list[str]:
    """Registered backend names, sorted."""
    return POSE_BACKENDS.names()


def create_pose_backend(cfg: PoseConfig) -> PoseBackend:
    """The configured backend (``pose.backend``); unknown names list the available ones."""
    return POSE_BACKENDS.get(cfg.backend)(cfg)


def require_model_file(path: str, key: str, how_to_get: str) -> Path:
    """The weights file at ``path``, or a FileNotFoundError naming it, its config key and source."""
    if not path:
        raise FileNotFoundError(f"{key} is not set: point it at the model file. {how_to_get}")
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(
            f"model file {str(resolved)!r} (config key {key}) does not exist. {how_to_get}"
        )
    return resolved
