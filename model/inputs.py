"""Inference-only guider logic: which driving track plays which reference character, and the
front-to-back order that holds for the whole video.

``model/animate.py`` (files + extractors), training validation and ``python -m
train.evaluate`` (stored clips) bring the reference image and the driving poses to the canvas
(:class:`preprocess.geometry.canvas.Crop`) and hand them here with the reference's depth map
on the canvas (or None: the feet heuristic):

- :func:`reference_order` is the whole step: the reference's nearness
  (:func:`preprocess.geometry.canvas.reference_nearness`), then :func:`match_characters`
  (driving tracks to reference characters, Hungarian on position and pose), then
  :func:`track_priority` (the order of the tracks: the reference's order for matched tracks,
  their own first pose for the others), fixed for the whole video;
- :func:`guider_arrays` gives the guider inputs of a frame range: in each frame the tracks
  on the canvas get ranks 0, 1, ... in that order
  (:func:`preprocess.geometry.canvas.canvas_ranks`, as training ranks the characters on its
  canvas), the background flow is zero, and the maps are drawn by
  :func:`preprocess.geometry.canvas.build_guider_arrays`, the function training uses.

The arrays go next to :meth:`model.guiders.Conditions.from_arrays` (float tensors).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from scipy.optimize import linear_sum_assignment

from preprocess.geometry.canvas import (
    GUIDER_INPUTS,
    GuiderArrays,
    build_guider_arrays,
    reference_nearness,
)
from preprocess.geometry.config import GeometryConfig
from preprocess.geometry.layout import BODY
from preprocess.geometry.order import nearness_from_feet
from preprocess.geometry.skeleton import Size, present_characters


def _descriptor(
    person: np.ndarray, threshold: float, short_side: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid / short side, body points normalised by the person's size, their visibility."""
    body = person[BODY]  # (17, 3)
    ok = body[:, 2] >= threshold
    xy = body[:, :2]
    centre = xy[ok].mean(0)
    extent = xy[ok].max(0) - xy[ok].min(0)
    size = max(float(np.sqrt(max(extent[0], 1.0) * max(extent[1], 1.0))), 1.0)
    return centre / short_side, (xy - centre) / size, ok


def _match_cost(a: np.ndarray, b: np.ndarray, threshold: float, short_side: float) -> float:
    """Position distance (in short sides) + mean distance of the shared normalised body points."""
    ca, pa, oka = _descriptor(a, threshold, short_side)
    cb, pb, okb = _descriptor(b, threshold, short_side)
    shared = oka & okb
    shape = (
        float(np.linalg.norm(pa[shared] - pb[shared], axis=1).mean()) if shared.sum() >= 3 else 1.0
    )
    return float(np.linalg.norm(ca - cb)) + shape


def first_poses(driving: np.ndarray, geo: GeometryConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T, P, 133, 3) -> each track's pose in its first frame with it present (P, 133, 3),
    and whether it is present anywhere (P,)."""
    present = present_characters(driving, geo.keypoint_threshold, geo.min_keypoints)  # (T, P)
    first = present.argmax(0)  # (P,)
    return driving[first, np.arange(driving.shape[1])], np.asarray(present.any(0))


def match_characters(
    reference: np.ndarray, driving: np.ndarray, size: Size, geo: GeometryConfig
) -> np.ndarray:
    """(P_d,) index of the reference character each driving track plays, -1 for none.

    Hungarian assignment on :func:`_match_cost` between each driving track's first present
    pose and each present reference character (canvas coordinates, so position counts too).
    """
    ref_present = present_characters(reference, geo.keypoint_threshold, geo.min_keypoints)
    poses, drv_present = first_poses(driving, geo)
    refs, drvs = np.flatnonzero(ref_present), np.flatnonzero(drv_present)
    match = np.full(driving.shape[1], -1, np.int64)
    if len(refs) == 0 or len(drvs) == 0:
        return match
    thr, short = geo.keypoint_threshold, float(min(size))
    cost = np.array([[_match_cost(poses[d], reference[r], thr, short) for r in refs] for d in drvs])
    rows, cols = linear_sum_assignment(cost)
    match[drvs[rows]] = refs[cols]
    return match


def track_priority(
    match: np.ndarray, ref_nearness: np.ndarray, driving: np.ndarray, geo: GeometryConfig
) -> np.ndarray:
    """(P_d,) front-to-back position of every driving track (0 = front), fixed for the video:
    matched tracks in the reference's order, then unmatched ones by their own first pose."""
    poses, present = first_poses(driving, geo)
    own = nearness_from_feet(poses, present, geo.keypoint_threshold)  # (P_d,)
    keys = []
    for track, ref in enumerate(match):
        near = ref_nearness[ref] if ref >= 0 else own[track]
        near = -np.inf if np.isnan(near) else near
        keys.append((ref < 0, -near, track))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    priority = np.empty(len(keys), np.int64)
    priority[order] = np.arange(len(keys))
    return priority


def reference_order(
    reference: np.ndarray,
    driving: np.ndarray,
    size: Size,
    geo: GeometryConfig,
    depth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(match (P_d,), priority (P_d,)) of driving keypoints (T, P_d, 133, 3) and reference
    keypoints (P_r, 133, 3), both in canvas pixels of ``size``; ``depth`` (H, W) is the
    reference image's relative inverse depth on the canvas, or None for the feet heuristic.
    The one computation of the held order that animation, validation and evaluation share."""
    nearness = reference_nearness(reference, geo, depth)  # (P_r,)
    match = match_characters(reference, driving, size, geo)
    return match, track_priority(match, nearness, driving, geo)


def guider_arrays(
    driving: np.ndarray,
    reference: np.ndarray,
    priority: np.ndarray,
    size: Size,
    geo: GeometryConfig,
    inputs: Collection[str] = GUIDER_INPUTS,
) -> GuiderArrays:
    """Inference inputs for driving keypoints (T, P, 133, 3) and reference keypoints
    (P_r, 133, 3), both in canvas pixels of ``size``; ``priority`` (P,) from
    :func:`track_priority` orders the tracks in every frame (ranks among the tracks on the
    canvas), the background flow is zero; only the guider ``inputs`` named are made."""
    keys = np.broadcast_to(np.asarray(priority, np.int64), driving.shape[:2])  # (T, P)
    return build_guider_arrays(driving, reference, keys, size, geo, inputs=inputs)
