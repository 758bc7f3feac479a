"""Moved to :mod:`preprocess.depth.depth_anything` (re-layout, issue 12): this shim keeps the
old names importable until the lead removes it."""

from preprocess.depth.depth_anything import (
    DEFAULT_HUB_ID,
    DEPTH_HOWTO,
    DepthAnythingDepth,
    load_depth_anything,
    normalise_per_frame,
    resolve_model,
)

__all__ = [
    "DEFAULT_HUB_ID",
    "DEPTH_HOWTO",
    "DepthAnythingDepth",
    "load_depth_anything",
    "normalise_per_frame",
    "resolve_model",
]
