"""The model's canvas: a frame brought to the training/inference size, and the four guider
inputs drawn on it.

Training (``train/examples.py``, from a stored clip) and inference (``model/inputs.py`` and
``model/animate.py``, from a reference image and driving poses) both come through here, so
their inputs are one computation; the data viewers reuse it too. Pure NumPy/OpenCV on
keypoints ``(..., 133, 3)`` in *canvas* pixels: the ``height x width`` frame that a source
frame is brought to by :class:`Crop` (resize so the frame covers the canvas, aspect kept,
then centre crop; the paper's "resize + centre crop").

- pose maps: :func:`preprocess.geometry.render.render_pose` of the driving keypoints;
- flow guider input: :func:`preprocess.geometry.flow.flow_guider_input` of the clip's flow
  brought to the canvas (:meth:`Crop.flow`; training) or of zero flow (inference: 0 in the
  background, 1.0 in the characters' skeletal dilation regions);
- depth-order maps: :func:`preprocess.geometry.order.depth_order_map` with the ranks of the
  characters *on the canvas* (:func:`canvas_ranks`: a character whose region falls outside the
  crop takes no rank, so the visible front character is always painted 255), numbered in a
  front-to-back order given per frame (training: the stored ``ranks.npy`` of the whole stored
  frame; inference: the order fixed by the reference image, :func:`reference_nearness`);
- reference pose map: the reference's own keypoints, rendered the same way.

A model may have fewer than the four guiders (``guiders.names`` of its config): only the
inputs it has are built (``inputs`` of :func:`build_guider_arrays`), the others stay None.
The arrays (:class:`GuiderArrays`) go next to ``model.guiders.Conditions.from_arrays`` /
``from_maps``, the one conversion to the guiders' float tensors.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.geometry.config import GeometryConfig
from preprocess.geometry.flow import flow_guider_input
from preprocess.geometry.masks import dilation_masks, union_mask
from preprocess.geometry.order import depth_order_map, nearness_from_depth, nearness_from_feet
from preprocess.geometry.render import render_pose
from preprocess.geometry.skeleton import Size, present_characters

GUIDER_INPUTS = ("pose", "flow", "order", "reference_pose")
"""The four guider inputs, in the order of the model's guiders (``model.guiders.GUIDER_NAMES``)."""


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

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """(h_m, w_m) depth map of a source frame at any map resolution -> (h, w) float32 on
        the canvas (bilinear resize over the whole map, centre crop; values unchanged)."""
        rh, rw = self.resized
        resized = cv2.resize(
            np.ascontiguousarray(depth, np.float32), (rw, rh), interpolation=cv2.INTER_LINEAR
        )  # (rh, rw)
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
    resolution (:func:`preprocess.geometry.masks.dilation_masks` with the model's geometry)."""
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
    people: np.ndarray, geo: GeometryConfig, depth: np.ndarray | None = None
) -> np.ndarray:
    """(P,) nearness of the reference characters (larger = nearer; NaN = absent).

    ``people`` (P, 133, 3) in canvas pixels; ``depth`` (h, w) relative inverse depth of the
    reference image on the same canvas (the caller runs the depth backend), or None for the
    feet heuristic (:func:`preprocess.geometry.order.nearness_from_feet`).
    """
    present = present_characters(people, geo.keypoint_threshold, geo.min_keypoints)  # (P,)
    if depth is None:
        return nearness_from_feet(people, present, geo.keypoint_threshold)
    masks = character_masks(people, depth.shape[:2], geo)  # (P, h, w)
    return nearness_from_depth(depth, masks, present)


def canvas_ranks(priority: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Ranks among the characters on the canvas: (..., P) front-to-back keys (smaller =
    nearer, negative = absent), (..., P) bool -> (..., P) int8.

    The characters that are ``visible`` (their skeletal region reaches the canvas) and have a
    key get ranks 0, 1, ... in the order of their keys (ties to the lower track); every other
    character gets -1. Training passes the stored per-frame ranks of the whole stored frame
    as keys, inference the order held from the reference image (:func:`build_guider_arrays`
    calls this for both), so a character cropped out never takes a rank from one that is seen.
    """
    keys = np.asarray(priority, np.int64)
    shown = np.asarray(visible, bool) & (keys >= 0)
    keyed = np.where(shown, keys, np.iinfo(np.int64).max)  # (..., P) hidden ones last
    order = np.argsort(keyed, axis=-1, kind="stable")  # ties: the lower track first
    ranks = np.argsort(order, axis=-1)  # position of each track in that order
    return np.where(shown, ranks, -1).astype(np.int8)


@dataclass
class GuiderArrays:
    """Guider inputs of a frame range as arrays, channels last (converted to float tensors by
    ``model.guiders.Conditions.from_arrays``)."""

    pose: np.ndarray | None  # (T, H, W, 3) uint8
    flow: np.ndarray | None  # (T, H, W, 2) float32
    order: np.ndarray | None  # (T, H, W) uint8
    reference_pose: np.ndarray | None  # (H, W, 3) uint8
    """Each None when the model has no such guider (not built, not fed)."""


def build_guider_arrays(
    driving: np.ndarray,
    reference: np.ndarray,
    priority: np.ndarray,
    size: Size,
    geo: GeometryConfig,
    flow: np.ndarray | None = None,
    inputs: Collection[str] = GUIDER_INPUTS,
) -> GuiderArrays:
    """The guider inputs of a frame range, as training and inference both build them.

    ``driving`` (T, P, 133, 3) and ``reference`` (P_r, 133, 3) keypoints in canvas pixels of
    ``size``; ``priority`` (T, P) front-to-back key per frame and track (smaller = nearer,
    negative = absent: training takes the stored ranks, inference the order held from the
    reference), turned into ranks among the characters on the canvas by :func:`canvas_ranks`;
    ``flow`` (T, H, W, 2) backward flow in canvas pixels per frame, or None for zero flow
    (inference). Masks are the skeletal dilation regions at the canvas resolution
    (:func:`character_masks`). Only the ``inputs`` named (of :data:`GUIDER_INPUTS`) are made;
    the others are None.
    """
    unknown = sorted(set(inputs) - set(GUIDER_INPUTS))
    if unknown:
        raise ValueError(f"unknown guider inputs {unknown}; they are {list(GUIDER_INPUTS)}")
    thr = geo.keypoint_threshold
    if "flow" in inputs and flow is not None and flow.shape != (len(driving), *size, 2):
        raise ValueError(f"flow {flow.shape} does not match {len(driving)} frames of {size}")
    zero = np.zeros((*size, 2), np.float32)
    pose, flow_in, order = [], [], []
    needs_masks = "flow" in inputs or "order" in inputs
    for i, (people, keys) in enumerate(zip(driving, priority, strict=True)):
        if "pose" in inputs:
            pose.append(render_pose(people, size, size, thr))
        if not needs_masks:
            continue
        masks = character_masks(people, size, geo)  # (P, H, W)
        if "flow" in inputs:
            frame_flow = zero if flow is None else flow[i]
            flow_in.append(flow_guider_input(frame_flow, union_mask(masks), geo.flow_scale))
        if "order" in inputs:
            ranks = canvas_ranks(keys, np.asarray(masks.any(axis=(1, 2))))  # (P,)
            order.append(depth_order_map(masks, ranks, geo.order_levels))
    return GuiderArrays(
        pose=np.stack(pose) if "pose" in inputs else None,
        flow=np.stack(flow_in) if "flow" in inputs else None,
        order=np.stack(order) if "order" in inputs else None,
        reference_pose=render_pose(reference, size, size, thr)
        if "reference_pose" in inputs
        else None,
    )
