"""Pose backend interface and its registry.

A backend turns a clip into tracked whole-body keypoints ``(T, P, 133, 3)`` (docs/design.md §3). It has
the shape of every extractor backend (:class:`preprocess.backends.Backend`: built from
``cfg.pose``, ``.device``, ``.identity()``). Model backends load their weights once in
``__init__`` and implement :meth:`PoseBackend.detect_frames`; the default
:meth:`PoseBackend.clip_keypoints` then drops fragments and duplicates
(:mod:`preprocess.pose.cleanup`) and links the per-frame detections into tracks with
:func:`preprocess.pose.tracking.track`. Top-down backends (person boxes, then keypoints per
crop) build on :class:`preprocess.pose.topdown.TopDownBackend`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import numpy as np

from preprocess.backends import Backend, Registry
from preprocess.clip import Clip
from preprocess.config import PoseConfig
from preprocess.pose.cleanup import clean_detections
from preprocess.pose.tracking import track


class PoseBackend(Backend[PoseConfig]):
    """Multi-person whole-body pose of a clip, in the COCO-WholeBody 133 layout."""

    kind = "pose"

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

    def model_file(self) -> str:
        return self.cfg.model


def check_frames(frames: np.ndarray) -> None:
    """Raise ValueError unless ``frames`` is a (T, H, W, 3) uint8 RGB batch."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.shape}")


POSE_BACKENDS: Registry[PoseBackend] = Registry("pose")


def create_pose_backend(cfg: PoseConfig) -> PoseBackend:
    """The configured backend (``pose.backend``); unknown names list the available ones."""
    return POSE_BACKENDS.create(cfg)


def register_pose_backend(name: str) -> Callable[[type[PoseBackend]], type[PoseBackend]]:
    """``POSE_BACKENDS.register(name)``, under its older name."""
    return POSE_BACKENDS.register(name)


def available_pose_backends() -> list[str]:
    """``POSE_BACKENDS.names()``, under its older name: registered backend names, sorted."""
    return POSE_BACKENDS.names()
