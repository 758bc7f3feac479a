"""Skeletal dilation masks and the regions and occlusion they define (docs/design.md §3).

A character's mask a_j is its skeleton drawn and dilated at a target size
(:func:`dilation_masks`, rasterised by :mod:`preprocess.geometry.skeleton`); from the masks of
a frame come the union M, the overlap counts, the exclusive regions m_j and the occlusion
rate. Ranks and depth-order maps (:mod:`preprocess.geometry.order`), the flow inputs
(:mod:`preprocess.geometry.flow`) and the clip statistics (:mod:`preprocess.geometry.clip`)
are built on these. Preprocessing calls them at the map size (``map_size``), training and
inference at the canvas size (:mod:`preprocess.geometry.canvas`).
"""

from __future__ import annotations

import math

import numpy as np

from preprocess.geometry.skeleton import Size, check_keypoints, draw_crops


def map_size(height: int, width: int, downscale: int) -> Size:
    """(h, w) of the maps of a ``height`` x ``width`` frame: each side // downscale, >= 1."""
    if downscale < 1:
        raise ValueError(f"map downscale must be >= 1, got {downscale}")
    return max(1, height // downscale), max(1, width // downscale)


def dilation_masks(
    keypoints: np.ndarray,
    frame_size: Size,
    out_size: Size,
    *,
    keypoint_threshold: float,
    limb_width: float,
    dilation: float,
    min_keypoints: int,
) -> np.ndarray:
    """Skeletal dilation maps a_j of one frame (docs/design.md §3): (P, 133, 3) keypoints in
    ``frame_size`` pixels -> (P, h, w) bool at ``out_size``.

    Limbs of :data:`SKELETON` whose two ends are confident are drawn as lines of
    :func:`limb_thickness` (a 1-pixel DDA line dilated by the disc of that diameter: round
    caps); confident points without such a limb are dots (zero-length lines: a disc of that
    diameter); the drawing is then dilated with the disc of :func:`disc_diameter`. Characters
    that are not :func:`present_characters` get an empty mask.
    """
    people = check_keypoints(keypoints, ndim=3)
    crops = draw_crops(
        people, frame_size, out_size, keypoint_threshold, limb_width, dilation, min_keypoints
    )
    masks = np.zeros((len(people), *out_size), bool)  # (P, h, w)
    for _, n, region, view in crops.regions(crops.drawn):
        masks[(n, *region)] = view
    return masks


def union_mask(masks: np.ndarray) -> np.ndarray:
    """(..., P, h, w) bool -> (..., h, w) bool: M = union of the characters' regions."""
    return np.logical_or.reduce(np.asarray(masks, bool), axis=-3)


def overlap_count(masks: np.ndarray) -> np.ndarray:
    """(..., P, h, w) bool -> (..., h, w) int32: how many characters cover each pixel."""
    return np.asarray(masks, bool).sum(axis=-3, dtype=np.int32)


def exclusive_regions(masks: np.ndarray) -> np.ndarray:
    """(..., P, h, w) bool -> (..., P, h, w) bool: m_j = a_j minus every pixel that any
    other character covers (the pixels of a_j covered by exactly one character)."""
    masks = np.asarray(masks, bool)
    return masks & (overlap_count(masks) == 1)[..., None, :, :]


def nonzero_per_map(maps: np.ndarray) -> np.ndarray:
    """(..., h, w) -> (...,) int64 nonzero pixels per map (a per-map ``count_nonzero`` is
    much faster than NumPy's axis reduction)."""
    flat = maps.reshape(-1, *maps.shape[-2:])  # (N, h, w)
    return np.array([np.count_nonzero(m) for m in flat], np.int64).reshape(maps.shape[:-2])


def occlusion_from_areas(
    union: np.ndarray, shared: np.ndarray, n_present: np.ndarray
) -> np.ndarray:
    """(...,) union and shared areas, characters -> (...,) float64 rate, NaN if undefined."""
    defined = (np.asarray(n_present) >= 2) & (union > 0)
    return np.where(defined, shared / np.maximum(union, 1), np.nan)


def occlusion_rate(masks: np.ndarray, present: np.ndarray) -> float | None:
    """(P, h, w), (P,) -> area covered by >= 2 present characters / area of their union;
    None with fewer than 2 present characters or an empty union."""
    present = np.asarray(present, bool)
    count = overlap_count(np.asarray(masks, bool)[present])  # (h, w)
    union, shared = nonzero_per_map(count), nonzero_per_map(count >= 2)
    rate = float(occlusion_from_areas(union, shared, np.array(present.sum())))
    return None if math.isnan(rate) else rate
