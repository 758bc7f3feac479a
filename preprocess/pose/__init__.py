"""Multi-person whole-body pose: backends (registry), cleanup and tracking.

Importing this package registers the built-in backends (``movenet``, ``topdown``,
``precomputed``, ``dwpose``); it is light (NumPy, OpenCV, SciPy; onnxruntime is imported only
when a model backend is built). Every backend has the shape of :class:`preprocess.backends.Backend`
(built from ``cfg.pose``, ``.device``, ``.identity()``). The pose-map renderer and the keypoint
layout live in the pure geometry layer (``preprocess.geometry.render`` / ``.layout``) and are
re-exported here. See docs/pose.md.
"""

from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.geometry.render import render_pose, render_pose_sequence, to_openpose18
from preprocess.pose import dwpose, movenet, precomputed, thunder  # noqa: F401  (registry)
from preprocess.pose.base import (
    POSE_BACKENDS,
    PoseBackend,
    available_pose_backends,
    create_pose_backend,
    register_pose_backend,
)
from preprocess.pose.precomputed import read_sidecar, sidecar_path, write_sidecar
from preprocess.pose.tracking import track

__all__ = [
    "NUM_KEYPOINTS",
    "POSE_BACKENDS",
    "PoseBackend",
    "available_pose_backends",
    "create_pose_backend",
    "read_sidecar",
    "register_pose_backend",
    "render_pose",
    "render_pose_sequence",
    "sidecar_path",
    "to_openpose18",
    "track",
    "write_sidecar",
]
