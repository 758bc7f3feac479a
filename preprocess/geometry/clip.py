"""One clip's geometry: union masks, ranks, depth-order maps and the clips-table statistics.

The preprocessing geometry stage (``preprocess.stages``) calls :func:`clip_geometry` on a
clip's tracked keypoints, flow and optional depth at the map resolution; the result
(:class:`ClipGeometry`) is encoded into the sample (``mask``, ``order``, ``ranks.npy``) and
its ``stats`` become the clip's row of the Parquet clips table. It gives exactly what the
per-frame functions of :mod:`preprocess.geometry.masks`, ``.order`` and ``.flow`` give, but
draws all characters of the clip at once (see docs/geometry.md, "Performance").

Speed (timed by ``benchmarks/``, never by tests): the skeletons are rasterised by
:mod:`preprocess.geometry.skeleton` (all characters of a clip at once); statistics are
vectorised over frames; nothing calls BLAS (its idle threads spin). Measured on a shared
2-core EPYC VM: ``clip_geometry`` of a 64-frame clip at a 192x144 map costs about
0.10-0.15 ms per frame with 4-5 characters and 0.22 ms with 6 whole-body characters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

import preprocess.geometry.layout as L
from preprocess.geometry.config import GeometryConfig
from preprocess.geometry.flow import background_magnitudes
from preprocess.geometry.masks import map_size, nonzero_per_map, occlusion_from_areas
from preprocess.geometry.order import nearness_from_feet, order_values, ranks_from_nearness
from preprocess.geometry.skeleton import (
    Crops,
    Size,
    check_keypoints,
    confident,
    draw_crops,
    present_characters,
)

logger = logging.getLogger(__name__)


@dataclass
class ClipGeometry:
    """Per-clip maps and statistics from :func:`clip_geometry` (docs/design.md §3)."""

    mask: np.ndarray
    """(T, h, w) bool: union skeletal dilation mask M_i at the map resolution."""
    order: np.ndarray
    """(T, h, w) uint8: depth-order map O_i (round(255 * L_r), background 0)."""
    ranks: np.ndarray
    """(T, P) int8: rank of each track per frame, -1 where absent."""
    stats: dict[str, float | int | None]
    """Clip statistics: the clips-table columns bg_flow_mean, bg_flow_p95, occlusion_rate_mean,
    occlusion_rate_max, characters_max, characters_mode, multi_character_frac, pose_score_mean."""


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
    union = nonzero_per_map(count)  # (T,) union areas
    n_background = count.shape[-2] * count.shape[-1] - union[1:]
    bg_mean, _, bg_p95 = _mean_max_p95(
        background_magnitudes(flow[1:], count[1:] == 0, n_background)
    )
    shared = np.zeros_like(union)  # (T,) areas covered twice, needed where n >= 2 only
    for t in np.flatnonzero(n >= 2):
        shared[t] = np.count_nonzero(count[t] >= 2)
    occ_mean, occ_max, _ = _mean_max_p95(occlusion_from_areas(union, shared, n))
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
    """Masks, ranks, depth order and statistics of one clip (docs/design.md §3).

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
    values = order_values(ranks[frame, track], cfg.order_levels)  # (D,)
    order = _accumulate(np.maximum, crops, frame, shape, values)  # (T, h, w)
    stats = _clip_stats(keypoints, flow, count, present, thr)
    logger.debug("clip geometry: %s tracks, maps %s: %s", present.shape, out_size, stats)
    return ClipGeometry(mask=count > 0, order=order, ranks=ranks, stats=stats)
