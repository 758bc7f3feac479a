"""Guider inputs from keypoints, with the preprocessing code (same masks, maps and renderer).

Everything is pure NumPy on keypoints ``(..., 133, 3)`` in *canvas* pixels: the output frame
of ``height x width`` that a source frame is brought to by :class:`Crop` (resize so the frame
covers the canvas, aspect kept, then centre crop; the paper's "resize + centre crop").

- pose maps: :func:`preprocess.pose.render_pose` of the driving keypoints;
- flow guider input: :func:`preprocess.geometry.flow_guider_input` of zero flow, i.e. 0 in the
  background and 1.0 in the characters' skeletal dilation regions;
- depth-order maps: :func:`preprocess.geometry.depth_order_map` with ranks taken from the
  reference image (:func:`reference_nearness`) and held for every frame: driving tracks are
  matched to reference characters (:func:`match_characters`), the front-to-back order of the
  reference fixes the order of the matched tracks, and in each frame the tracks present get
  ranks 0, 1, ... in that order (as training ranks the characters of a frame);
- reference pose map: the reference image's own keypoints, rendered the same way.

Training (``train/loader.py``) builds the same four inputs with :func:`build_guider_arrays`,
giving the stored per-frame ranks and the clip's stored flow brought to the canvas
(:meth:`Crop.flow`) instead of inference's held ranks and zero flow.

Float conversion (:func:`to_conditions`): pose and order maps / 255, flow input as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from model.guiders import Conditions
from preprocess.config import DepthConfig, GeometryConfig
from preprocess.depth import create_depth_backend
from preprocess.geometry import (
    depth_order_map,
    dilation_masks,
    flow_guider_input,
    nearness_from_depth,
    nearness_from_feet,
    present_characters,
    union_mask,
)
from preprocess.pose import render_pose
from preprocess.pose.layout import BODY

Size = tuple[int, int]


@dataclass(frozen=True)
class Crop:
    """Resize a ``source`` (H, W) frame to cover ``out`` (h, w), aspect kept, centre crop."""

    source: Size
    out: Size

    @property
    def resized(self) -> Size:
        (sh, sw), (h, w) = self.source, self.out
        scale = max(h / sh, w / sw)
        return max(h, round(sh * scale)), max(w, round(sw * scale))

    @property
    def offset(self) -> Size:
        (rh, rw), (h, w) = self.resized, self.out
        return (rh - h) // 2, (rw - w) // 2

    def image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (h, w, 3) uint8."""
        rh, rw = self.resized
        shrink = rh < image.shape[0]
        resized = cv2.resize(
            image, (rw, rh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        )
        (y0, x0), (h, w) = self.offset, self.out
        return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])

    def flow(self, flow: np.ndarray) -> np.ndarray:
        """(h_m, w_m, 2) flow of a source frame at any map resolution, in source pixels per
        frame -> (h, w, 2) float32 on the canvas, in canvas pixels per frame (bilinear resize
        over the whole map, centre crop, vectors scaled by the resize factors)."""
        (sh, sw), (rh, rw) = self.source, self.resized
        resized = cv2.resize(
            np.ascontiguousarray(flow, np.float32), (rw, rh), interpolation=cv2.INTER_LINEAR
        )  # (rh, rw, 2)
        resized *= np.array([rw / sw, rh / sh], np.float32)
        (y0, x0), (h, w) = self.offset, self.out
        return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])

    def keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., K, 3) source pixels -> canvas pixels (pixel centre to pixel centre)."""
        (sh, sw), (rh, rw), (y0, x0) = self.source, self.resized, self.offset
        out = np.array(keypoints, np.float32, copy=True)
        out[..., 0] = (out[..., 0] + 0.5) * (rw / sw) - 0.5 - x0
        out[..., 1] = (out[..., 1] + 0.5) * (rh / sh) - 0.5 - y0
        out[out[..., 2] <= 0] = 0.0  # absent points carry no coordinates
        return out


def character_masks(people: np.ndarray, size: Size, geo: GeometryConfig) -> np.ndarray:
    """(P, 133, 3) canvas keypoints -> (P, h, w) bool skeletal dilation regions at the canvas
    resolution (:func:`preprocess.geometry.dilation_masks` with the model's geometry)."""
    return dilation_masks(
        people,
        size,
        size,
        keypoint_threshold=geo.keypoint_threshold,
        limb_width=geo.limb_width,
        dilation=geo.dilation,
        min_keypoints=geo.min_keypoints,
    )


def reference_nearness(
    image: np.ndarray, people: np.ndarray, geo: GeometryConfig, depth: DepthConfig
) -> np.ndarray:
    """(P,) nearness of the reference characters (larger = nearer; NaN = absent) from the
    configured depth backend on the reference image, or the feet heuristic without a map."""
    present = present_characters(people, geo.keypoint_threshold, geo.min_keypoints)  # (P,)
    size = image.shape[:2]
    depth_map = create_depth_backend(depth).clip_depth(image[None], size)
    if depth_map is None:
        return nearness_from_feet(people, present, geo.keypoint_threshold)
    return nearness_from_depth(depth_map[0], character_masks(people, size, geo), present)


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


def frame_ranks(priority: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(P,), (T, P) -> (T, P) int8: per frame, ranks 0.. of the present tracks by priority."""
    big = np.iinfo(np.int64).max
    keyed = np.where(present, priority[None], big)  # (T, P)
    ranks = np.argsort(np.argsort(keyed, axis=1, kind="stable"), axis=1)
    return np.where(present, ranks, -1).astype(np.int8)


@dataclass
class GuiderArrays:
    """Guider inputs of a frame range as arrays (see :func:`to_conditions`)."""

    pose: np.ndarray  # (T, H, W, 3) uint8
    flow: np.ndarray  # (T, H, W, 2) float32
    order: np.ndarray  # (T, H, W) uint8
    reference_pose: np.ndarray  # (H, W, 3) uint8


def guider_arrays(
    driving: np.ndarray,
    reference: np.ndarray,
    priority: np.ndarray,
    size: Size,
    geo: GeometryConfig,
) -> GuiderArrays:
    """Inference inputs for driving keypoints (T, P, 133, 3) and reference keypoints
    (P_r, 133, 3), both in canvas pixels of ``size``; ``priority`` from
    :func:`track_priority` fixes the ranks, and the background flow is zero."""
    present = present_characters(driving, geo.keypoint_threshold, geo.min_keypoints)  # (T, P)
    return build_guider_arrays(driving, reference, frame_ranks(priority, present), size, geo)


def build_guider_arrays(
    driving: np.ndarray,
    reference: np.ndarray,
    ranks: np.ndarray,
    size: Size,
    geo: GeometryConfig,
    flow: np.ndarray | None = None,
) -> GuiderArrays:
    """The four guider inputs of a frame range, as training and inference both build them.

    ``driving`` (T, P, 133, 3) and ``reference`` (P_r, 133, 3) keypoints in canvas pixels of
    ``size``; ``ranks`` (T, P) int per frame and track (-1 absent: training takes the stored
    ranks, inference :func:`frame_ranks`); ``flow`` (T, H, W, 2) backward flow in canvas
    pixels per frame, or None for zero flow (inference). Masks are the skeletal dilation
    regions at the canvas resolution (:func:`character_masks`).
    """
    thr = geo.keypoint_threshold
    if flow is not None and flow.shape != (len(driving), *size, 2):
        raise ValueError(f"flow {flow.shape} does not match {len(driving)} frames of {size}")
    zero = np.zeros((*size, 2), np.float32)
    pose, flow_in, order = [], [], []
    for i, (people, frame_rank) in enumerate(zip(driving, ranks, strict=True)):
        masks = character_masks(people, size, geo)  # (P, H, W)
        pose.append(render_pose(people, size, size, thr))
        frame_flow = zero if flow is None else flow[i]
        flow_in.append(flow_guider_input(frame_flow, union_mask(masks), geo.flow_scale))
        order.append(depth_order_map(masks, frame_rank, geo.order_levels))
    return GuiderArrays(
        pose=np.stack(pose),
        flow=np.stack(flow_in),
        order=np.stack(order),
        reference_pose=render_pose(reference, size, size, thr),
    )


def to_conditions(arrays: GuiderArrays) -> Conditions:
    """Arrays -> float :class:`Conditions` of one clip (B = 1), channels first."""

    def frames(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)[
            None
        ]  # (1, T, C, H, W)

    return Conditions(
        pose=frames(arrays.pose).float() / 255,
        flow=frames(arrays.flow).float(),
        order=frames(arrays.order[..., None]).float() / 255,
        reference_pose=frames(arrays.reference_pose[None]).float() / 255,
    )
