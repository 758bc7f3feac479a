"""Multi-person whole-body pose: backends (registry), tracking and the pose-map renderer.

Importing this package registers the built-in backends (``movenet``, ``precomputed``,
``dwpose``); it is light (NumPy, OpenCV, SciPy; onnxruntime is imported only when a model
backend is built), so training and inference import it for :func:`render_pose`. See
docs/pose.md.
"""

from preprocess.pose import dwpose, movenet, precomputed  # noqa: F401  (fill the registry)
from preprocess.pose.base import (
    POSE_BACKENDS,
    PoseBackend,
    available_pose_backends,
    create_pose_backend,
    register_pose_backend,
)
from preprocess.pose.layout import NUM_KEYPOINTS
from preprocess.pose.precomputed import read_sidecar, sidecar_path, write_sidecar
from preprocess.pose.render import render_pose, render_pose_sequence, to_openpose18
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
