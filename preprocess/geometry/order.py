"""Nearness, ranks and depth-order maps (docs/design.md §3): who is in front, and the map O that
paints each character with the level of its rank.

Nearness comes from a relative inverse depth map (mean over each character's exclusive
region) or, without one, from the feet heuristic; ranks order the present characters by it;
:func:`depth_order_map` paints their full regions. Used per clip by
:mod:`preprocess.geometry.clip` (stored ``ranks.npy`` / ``order``) and per canvas by
:mod:`preprocess.geometry.canvas` (the order guider's input).
"""

from __future__ import annotations

import cv2
import numpy as np

import preprocess.geometry.layout as L
from preprocess.geometry.masks import overlap_count
from preprocess.geometry.skeleton import check_keypoints, confident

_FEET_BODY = slice(0, L.FEET.stop)  # body and feet: the points the feet heuristic looks at


def nearness_from_depth(depth: np.ndarray, masks: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(h, w) inverse depth, (P, h, w) regions, (P,) -> (P,) float64 mean depth over each
    present character's exclusive region (its full region if that is empty; NaN if both are
    empty, and for absent characters). Absent characters' regions are ignored."""
    present = np.asarray(present, bool)
    regions = np.ascontiguousarray(masks, bool)  # (P, h, w)
    alone = (overlap_count(regions[present]) == 1).view(np.uint8)  # (h, w)
    depth = np.ascontiguousarray(depth, np.float32)  # (h, w)
    nearness = np.full(len(regions), np.nan)
    for p in np.flatnonzero(present):
        full = regions[p].view(np.uint8)  # (h, w)
        for mask in (cv2.bitwise_and(full, alone), full):  # m_j, then a_j
            if cv2.countNonZero(mask):
                nearness[p] = cv2.mean(depth, mask=mask)[0]
                break
    return nearness


def nearness_from_feet(
    keypoints: np.ndarray, present: np.ndarray, keypoint_threshold: float
) -> np.ndarray:
    """(..., P, 133, 3), (..., P) -> (..., P) float64: the weightless ground-plane heuristic.

    Nearness is the image y of a character's lowest confident body or foot keypoint (0..22):
    on a floor seen from above the horizon, a lower contact point is nearer the camera.
    Face and hand points are ignored (a raised hand says nothing about distance). NaN for
    absent characters.
    """
    points = check_keypoints(keypoints)[..., _FEET_BODY, :]  # (..., P, 23, 3)
    conf = confident(points, keypoint_threshold)  # (..., P, 23)
    lowest = np.where(conf, points[..., 1], -np.inf).max(-1).astype(np.float64)  # (..., P)
    return np.where(np.asarray(present, bool) & conf.any(-1), lowest, np.nan)


def ranks_from_nearness(nearness: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(..., P), (..., P) -> (..., P) int8 ranks: 0 = nearest = largest nearness, -1 absent.

    Ties go to the lower track index; present characters with NaN nearness (no region)
    come after all others.
    """
    near = np.asarray(nearness, np.float64)
    present = np.asarray(present, bool)
    if near.shape[-1] > np.iinfo(np.int8).max:
        raise ValueError(f"at most 127 tracks can be ranked, got {near.shape[-1]}")
    missing = np.isnan(near)
    index = np.broadcast_to(np.arange(near.shape[-1]), near.shape)
    order = np.lexsort((index, np.where(missing, 0.0, -near), missing, ~present), axis=-1)
    ranks = np.argsort(order, axis=-1)  # the inverse permutation: position in the order
    return np.where(present, ranks, -1).astype(np.int8)


def _check_levels(levels: int) -> None:
    if levels < 1:
        raise ValueError(f"order levels K must be >= 1, got {levels}")


def order_level(rank: int, levels: int) -> float:
    """L_r = (K - r) / K for 0 <= r < K, 1 / K beyond; 0.0 for r < 0 (absent: not painted)."""
    _check_levels(levels)
    if rank < 0:
        return 0.0
    return (levels - rank) / levels if rank < levels else 1 / levels


def order_values(ranks: np.ndarray, levels: int) -> np.ndarray:
    """(...) int ranks -> (...) uint8 round(255 * L_r), halves up, in exact integer maths."""
    _check_levels(levels)
    r = np.asarray(ranks, np.int64)
    k = np.where(r < levels, levels - r, 1)  # L_r = k / K
    return np.where(r < 0, 0, (510 * k + levels) // (2 * levels)).astype(np.uint8)


def order_value(rank: int, levels: int) -> int:
    """The stored uint8 of a rank: round(255 * L_r), halves up (K = 4: 255, 191, 128, 64)."""
    return int(order_values(np.array(rank), levels))


def depth_order_map(masks: np.ndarray, ranks: np.ndarray, levels: int) -> np.ndarray:
    """(..., P, h, w) full regions, (..., P) ranks -> (..., h, w) uint8 depth-order map O.

    Painting every region with its level from the farthest rank to the nearest leaves each
    pixel with the level of the nearest covering character; levels never increase with rank,
    so that is the largest level among the covering characters, which is what is computed.
    Background and characters of rank -1 stay 0.
    """
    masks = np.asarray(masks, bool)
    values = order_values(ranks, levels)  # (..., P)
    out = np.zeros(masks.shape[:-3] + masks.shape[-2:], np.uint8)  # (..., h, w)
    for p in range(masks.shape[-3]):
        np.maximum(out, masks[..., p, :, :] * values[..., p, None, None], out=out)
    return out
