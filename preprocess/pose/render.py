"""Moved to :mod:`preprocess.geometry.render` (the pure geometry layer); this re-export keeps
the old import path working until the re-layout removes it."""

from preprocess.geometry.render import (
    HAND_COLORS,
    OPENPOSE_COLORS,
    OPENPOSE_LIMBS,
    render_pose,
    render_pose_sequence,
    to_openpose18,
)

__all__ = [
    "HAND_COLORS",
    "OPENPOSE_COLORS",
    "OPENPOSE_LIMBS",
    "render_pose",
    "render_pose_sequence",
    "to_openpose18",
]
