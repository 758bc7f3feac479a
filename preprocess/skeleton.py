"""Moved to :mod:`preprocess.geometry.skeleton` (the pure geometry layer); this re-export
keeps the old import path working until the re-layout removes it."""

from preprocess.geometry.skeleton import (
    BODY_LIMBS,
    FOOT_LIMBS,
    HAND_LIMBS,
    SKELETON,
    Crops,
    Size,
    check_keypoints,
    confident,
    disc_diameter,
    disc_kernel,
    draw_crops,
    limb_thickness,
    present_characters,
    to_map,
)

__all__ = [
    "BODY_LIMBS",
    "FOOT_LIMBS",
    "HAND_LIMBS",
    "SKELETON",
    "Crops",
    "Size",
    "check_keypoints",
    "confident",
    "disc_diameter",
    "disc_kernel",
    "draw_crops",
    "limb_thickness",
    "present_characters",
    "to_map",
]
