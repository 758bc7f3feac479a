"""DESIGN §3 geometry as pure array functions: skeletal dilation masks, exclusive regions,
ranks, depth-order maps, background flow, occlusion and the per-clip statistics.

No I/O, no models: NumPy and OpenCV on arrays. Preprocessing (at the map resolution),
training (at 896x640) and inference call the same functions with keypoints and a target
resolution, so masks and order maps come from one procedure everywhere. Decisions and
defaults are written up in docs/geometry.md.

Conventions: keypoints ``(..., P, 133, 3)`` (x, y, score) in the COCO-WholeBody layout, x/y in
``frame_size`` pixels; a keypoint is *confident* when ``score > 0``, ``score >= threshold`` and
its x, y are finite. Sizes are ``(height, width)``; maps are ``(h, w)``.

Speed (timed by ``benchmarks/``, never by tests): the skeletons are rasterised by
:mod:`preprocess.skeleton` (all characters of a clip at once); statistics are vectorised over
frames; nothing calls BLAS (its idle threads spin). Measured on a shared 2-core EPYC VM:
``clip_geometry`` of a 64-frame clip at a 192x144 map costs about 0.10-0.15 ms per frame with
4-5 characters and 0.22 ms with 6 whole-body characters.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from preprocess.clip import ClipGeometry
from preprocess.config import GeometryConfig
from preprocess.pose import layout as L
from preprocess.skeleton import (
    Crops,
    Size,
    check_keypoints,
    confident,
    draw_crops,
    present_characters,
)

logger = logging.getLogger(__name__)

_FEET_BODY = slice(0, L.FEET.stop)  # body and feet: the points the feet heuristic looks at


# --- sizes ------------------------------------------------------------------------------


def map_size(height: int, width: int, downscale: int) -> Size:
    """(h, w) of the maps of a ``height`` x ``width`` frame: each side // downscale, >= 1."""
    if downscale < 1:
        raise ValueError(f"map downscale must be >= 1, got {downscale}")
    return max(1, height // downscale), max(1, width // downscale)


# --- masks ----------------------------------------------------------------------------


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
    """Skeletal dilation maps a_j of one frame (DESIGN §3): (P, 133, 3) keypoints in
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


# --- regions ----------------------------------------------------------------------------


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


def _nonzero_per_map(maps: np.ndarray) -> np.ndarray:
    """(..., h, w) -> (...,) int64 nonzero pixels per map (a per-map ``count_nonzero`` is
    much faster than NumPy's axis reduction)."""
    flat = maps.reshape(-1, *maps.shape[-2:])  # (N, h, w)
    return np.array([np.count_nonzero(m) for m in flat], np.int64).reshape(maps.shape[:-2])


def _occlusion_from_areas(
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
    union, shared = _nonzero_per_map(count), _nonzero_per_map(count >= 2)
    rate = float(_occlusion_from_areas(union, shared, np.array(present.sum())))
    return None if math.isnan(rate) else rate


# --- nearness and ranks -----------------------------------------------------------------


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


# --- depth order ------------------------------------------------------------------------


def _check_levels(levels: int) -> None:
    if levels < 1:
        raise ValueError(f"order levels K must be >= 1, got {levels}")


def order_level(rank: int, levels: int) -> float:
    """L_r = (K - r) / K for 0 <= r < K, 1 / K beyond; 0.0 for r < 0 (absent: not painted)."""
    _check_levels(levels)
    if rank < 0:
        return 0.0
    return (levels - rank) / levels if rank < levels else 1 / levels


def _order_values(ranks: np.ndarray, levels: int) -> np.ndarray:
    """(...) int ranks -> (...) uint8 round(255 * L_r), halves up, in exact integer maths."""
    _check_levels(levels)
    r = np.asarray(ranks, np.int64)
    k = np.where(r < levels, levels - r, 1)  # L_r = k / K
    return np.where(r < 0, 0, (510 * k + levels) // (2 * levels)).astype(np.uint8)


def order_value(rank: int, levels: int) -> int:
    """The stored uint8 of a rank: round(255 * L_r), halves up (K = 4: 255, 191, 128, 64)."""
    return int(_order_values(np.array(rank), levels))


def depth_order_map(masks: np.ndarray, ranks: np.ndarray, levels: int) -> np.ndarray:
    """(..., P, h, w) full regions, (..., P) ranks -> (..., h, w) uint8 depth-order map O.

    Painting every region with its level from the farthest rank to the nearest leaves each
    pixel with the level of the nearest covering character; levels never increase with rank,
    so that is the largest level among the covering characters, which is what is computed.
    Background and characters of rank -1 stay 0.
    """
    masks = np.asarray(masks, bool)
    values = _order_values(ranks, levels)  # (..., P)
    out = np.zeros(masks.shape[:-3] + masks.shape[-2:], np.uint8)  # (..., h, w)
    for p in range(masks.shape[-3]):
        np.maximum(out, masks[..., p, :, :] * values[..., p, None, None], out=out)
    return out


# --- flow -------------------------------------------------------------------------------


def background_flow(flow: np.ndarray, union: np.ndarray) -> np.ndarray:
    """B = (1 - M) * F: (..., h, w, 2) flow with the characters' union (..., h, w) zeroed."""
    flow = np.asarray(flow)
    return np.where(np.asarray(union, bool)[..., None], 0, flow).astype(flow.dtype, copy=False)


def _background_magnitudes(
    flow: np.ndarray, background: np.ndarray, n_background: np.ndarray
) -> np.ndarray:
    """(..., h, w, 2) flow, (..., h, w) bool background (M = 0) and its (...,) areas ->
    (...,) float64 mean |F|_2 over the background, NaN where it is empty. Flow is expected
    finite (NaN under the mask would still poison its frame)."""
    f = np.ascontiguousarray(flow, np.float32)  # (..., h, w, 2)
    magnitude = np.abs(f.view(np.complex64)[..., 0])  # (..., h, w)
    magnitude *= background
    total = magnitude.sum(-1).sum(-1, dtype=np.float64)  # rows in float32, then float64
    return np.where(n_background > 0, total / np.maximum(n_background, 1), np.nan)


def background_flow_magnitude(flow: np.ndarray, union: np.ndarray) -> float:
    """b = mean over pixels with M = 0 of |F|_2 for (h, w, 2) flow; NaN if M covers all."""
    background = ~np.asarray(union, bool)
    return float(_background_magnitudes(flow, background, _nonzero_per_map(background)))


def flow_guider_input(flow: np.ndarray, union: np.ndarray, scale: float) -> np.ndarray:
    """(1 - M) * F / s + M * 1.0 per channel: (..., h, w, 2) float32."""
    scaled = np.asarray(flow, np.float32) / np.float32(scale)
    return np.where(np.asarray(union, bool)[..., None], np.float32(1.0), scaled)


# --- the clip ---------------------------------------------------------------------------


def _clip_map_size(
    keypoints: np.ndarray,
    flow: np.ndarray,
    frame_size: Size,
    cfg: GeometryConfig,
    depth: np.ndarray | None,
) -> Size:
    t = keypoints.shape[0]
    h, w = map_size(*frame_size, cfg.map_downscale)
    if flow.shape != (t, h, w, 2):
        raise ValueError(
            f"flow has shape {flow.shape}, expected {(t, h, w, 2)}: {t} frames at the map "
            f"size of {frame_size} frames / geometry.map_downscale={cfg.map_downscale}"
        )
    if depth is not None and depth.shape != (t, h, w):
        raise ValueError(f"depth has shape {depth.shape}, expected {(t, h, w)}")
    return h, w


def _accumulate(
    ufunc: np.ufunc,
    crops: Crops,
    frame: np.ndarray,
    shape: tuple[int, int, int],
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Combine the drawn characters' crops (times ``values`` (D,) if given) into (T, h, w)
    uint8 maps with ``ufunc``: add gives overlap counts, maximum the depth-order map."""
    out = np.zeros(shape, np.uint8)  # (T, h, w)
    for i, t, region, view in crops.regions(frame):
        target = out[(t, *region)]  # (ch, cw) view
        ufunc(target, view if values is None else view * values[i], out=target)
    return out


def _crop_depth_nearness(
    crops: Crops, frame: np.ndarray, count: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """(D,) mean depth of each drawn character over its exclusive region (pixels it alone
    covers), or its full region if that is empty: :func:`nearness_from_depth` per crop."""
    nearness = np.full(len(crops.drawn), np.nan)
    for i, t, region, view in crops.regions(frame):
        alone = (count[(t, *region)] == 1).view(np.uint8)  # (ch, cw)
        for mask in (cv2.bitwise_and(view, alone), view):  # m_j, then a_j
            if cv2.countNonZero(mask):
                nearness[i] = cv2.mean(np.ascontiguousarray(depth[(t, *region)]), mask=mask)[0]
                break
    return nearness


def _pose_score_mean(keypoints: np.ndarray, present: np.ndarray, threshold: float) -> float | None:
    """Mean over frames and present characters of their confident body points' mean score."""
    body = keypoints[..., L.BODY, :]  # (T, P, 17, 3)
    conf = confident(body, threshold) & present[..., None]  # (T, P, 17)
    n = conf.sum(-1)  # (T, P)
    sums = np.where(conf, body[..., 2], 0).sum(-1, dtype=np.float64)  # (T, P)
    means = sums[n > 0] / n[n > 0]
    return float(means.mean()) if means.size else None


def _mean_max_p95(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean, max and 95th percentile of the non-NaN values (Nones when there are none)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return None, None, None
    return float(v.mean()), float(v.max()), float(np.percentile(v, 95))


def _clip_stats(
    keypoints: np.ndarray,
    flow: np.ndarray,
    count: np.ndarray,
    present: np.ndarray,
    threshold: float,
) -> dict[str, float | int | None]:
    """The clips-table statistics from per-frame overlap counts (T, h, w) and presence."""
    n = present.sum(-1)  # (T,) characters per frame
    union = _nonzero_per_map(count)  # (T,) union areas
    n_background = count.shape[-2] * count.shape[-1] - union[1:]
    bg_mean, _, bg_p95 = _mean_max_p95(
        _background_magnitudes(flow[1:], count[1:] == 0, n_background)
    )
    shared = np.zeros_like(union)  # (T,) areas covered twice, needed where n >= 2 only
    for t in np.flatnonzero(n >= 2):
        shared[t] = np.count_nonzero(count[t] >= 2)
    occ_mean, occ_max, _ = _mean_max_p95(_occlusion_from_areas(union, shared, n))
    return {
        "bg_flow_mean": bg_mean,
        "bg_flow_p95": bg_p95,
        "occlusion_rate_mean": occ_mean,
        "occlusion_rate_max": occ_max,
        "characters_max": int(n.max(initial=0)),
        "characters_mode": int(np.bincount(n).argmax()) if n.size else 0,
        "multi_character_frac": float((n >= 2).mean()) if n.size else 0.0,
        "pose_score_mean": _pose_score_mean(keypoints, present, threshold),
    }


def clip_geometry(
    keypoints: np.ndarray,
    flow: np.ndarray,
    frame_size: Size,
    cfg: GeometryConfig,
    depth: np.ndarray | None = None,
) -> ClipGeometry:
    """Masks, ranks, depth order and statistics of one clip (DESIGN §3).

    ``keypoints`` (T, P, 133, 3) in stored pixels of ``frame_size`` (H, W); ``flow``
    (T, h, w, 2) backward flow in stored pixels per frame at the map resolution
    ``map_size(H, W, cfg.map_downscale)``, F_0 not counted; ``depth`` (T, h, w) relative
    inverse depth, or None to rank by :func:`nearness_from_feet`.
    """
    keypoints = check_keypoints(keypoints, ndim=4)
    flow = np.asarray(flow)
    out_size = _clip_map_size(keypoints, flow, frame_size, cfg, depth)
    thr, shape = cfg.keypoint_threshold, (len(keypoints), *out_size)
    present = present_characters(keypoints, thr, cfg.min_keypoints)  # (T, P)
    frame, track = np.nonzero(present)  # (N,) the present characters, frame by frame
    crops = draw_crops(
        keypoints[frame, track], frame_size, out_size, thr, cfg.limb_width, cfg.dilation,
        cfg.min_keypoints,
    )  # fmt: skip
    frame, track = frame[crops.drawn], track[crops.drawn]  # (D,) the drawn ones
    count = _accumulate(np.add, crops, frame, shape)  # (T, h, w) overlap counts
    if depth is None:
        nearness = nearness_from_feet(keypoints, present, thr)  # (T, P)
    else:
        nearness = np.full(present.shape, np.nan)  # (T, P); NaN: present but not drawn
        depth = np.asarray(depth, np.float32)  # (T, h, w)
        nearness[frame, track] = _crop_depth_nearness(crops, frame, count, depth)
    ranks = ranks_from_nearness(nearness, present)  # (T, P)
    values = _order_values(ranks[frame, track], cfg.order_levels)  # (D,)
    order = _accumulate(np.maximum, crops, frame, shape, values)  # (T, h, w)
    stats = _clip_stats(keypoints, flow, count, present, thr)
    logger.debug("clip geometry: %s tracks, maps %s: %s", present.shape, out_size, stats)
    return ClipGeometry(mask=count > 0, order=order, ranks=ranks, stats=stats)
