"""Top-down pose machinery: person boxes -> one crop per person -> keypoints -> frame pixels.

Shared by the top-down backends (``dwpose``, and ``topdown`` in :mod:`preprocess.pose.thunder`
with its hands); none of it knows a particular model:

- :class:`OnnxModel`: an image model in onnxruntime (NCHW, or NHWC as TF.js exports are; fed
  the input type of its file, float32 or int32), batched as its file allows (a
  symbolic batch runs ``pose.batch_size`` images per call; a fixed batch ``B`` runs chunks of
  exactly ``B``, the last padded by repetition and its extra outputs dropped); on the CPU a
  ``parallel`` model runs its chunks side by side on ``threads`` threads, one core each;
- :func:`letterbox`: a frame resized into a fixed input, top-left on a grey canvas (detectors);
- :func:`nms_boxes`: score threshold + IoU non-maximum suppression of boxes;
- :class:`Crop`, :func:`box_to_crop`, :func:`crop_matrix`, :func:`crop_patch`: a box padded
  and fitted to the crop model's aspect, and the affine warp frame -> crop (its inverse maps
  keypoints back to frame pixels); a crop may be rotated (``Crop.axes``: hand crops);
- :class:`TopDownBackend`: the pose backend that chains them; a subclass gives the boxes
  (:meth:`~TopDownBackend.detect_boxes`) and the keypoints of a batch of crops
  (:meth:`~TopDownBackend.crop_keypoints`).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from preprocess.devices import onnx_device, onnx_session, session_device
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose.base import PoseBackend, check_frames

log = logging.getLogger(__name__)

BBOX_PADDING = 1.25
"""A person box is enlarged by this factor before cropping (mmpose's top-down default)."""


class OnnxModel:
    """An onnxruntime session with its input geometry and batch rule read from the file.

    ``parallel`` (small fixed-batch models on the CPU: one 256 px crop is too little work to
    split across cores, so onnxruntime's intra-op threads mostly wait on each other): the
    session runs single-threaded and the chunks of a batch run side by side on ``threads``
    Python threads (onnxruntime releases the GIL). Measured on vtest, the top-down chain with
    2 threads: 7.6 frames/s instead of 6.6, 4.4 frames per CPU-second instead of 3.9, on the
    same crops (docs/pose.md)."""

    def __init__(
        self,
        path: Path,
        device: str,
        threads: int,
        default_hw: tuple[int, int],
        key: str,
        layout: str = "NCHW",
        parallel: bool = False,
    ) -> None:
        # a GPU session is fed one chunk at a time: only CPU sessions run chunks side by side
        cpu = onnx_device(device, key) == "cpu"
        workers = threads if parallel and threads > 1 and cpu else 1
        self.session: Any = onnx_session(path, device, 1 if workers > 1 else threads, key)
        self.device = session_device(self.session)
        self.pool = ThreadPoolExecutor(workers, "onnx") if workers > 1 else None
        spec = self.session.get_inputs()[0]
        self.input = spec.name
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.dtype = np.int32 if spec.type == "tensor(int32)" else np.float32
        shape = list(spec.shape)
        if len(shape) != 4:
            raise ValueError(f"{path}: expected an {layout} image input, got shape {shape}")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        spatial = shape[2:] if layout == "NCHW" else shape[1:3]  # NHWC: TF.js exports
        dims = [d if isinstance(d, int) and d > 0 else None for d in spatial]
        self.hw = (dims[0] or default_hw[0], dims[1] or default_hw[1])
        self.provider = self.session.get_providers()[0]

    def step(self, batch_size: int) -> int:
        """Images to prepare at a time: ``batch_size``, at least one fixed batch."""
        return max(batch_size, self.fixed_batch or 1)

    def run(self, batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """All outputs for ``batch`` (N, 3, h, w) or (N, h, w, 3), as the file's input type
        (float32 or int32), in chunks the model's batch dim allows."""
        step = self.fixed_batch or max(1, batch_size)
        parts = [batch[start : start + step] for start in range(0, len(batch), step)]
        if self.pool is not None and len(parts) > 1:
            chunks = list(self.pool.map(self.run_chunk, parts))
        else:
            chunks = [self.run_chunk(part) for part in parts]
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]

    def run_chunk(self, part: np.ndarray) -> list[np.ndarray]:
        """One session call on at most one batch; a short fixed batch is padded by repetition
        and its extra outputs dropped."""
        real = len(part)
        if self.fixed_batch and real < self.fixed_batch:
            part = np.concatenate([part, np.repeat(part[-1:], self.fixed_batch - real, 0)])
        outs = self.session.run(None, {self.input: np.ascontiguousarray(part, self.dtype)})
        return [o[:real] for o in outs]


# ---- person boxes --------------------------------------------------------------------------


def letterbox(
    frame: np.ndarray, input_hw: tuple[int, int], pad_value: int = 114
) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 -> ((3, h, w) float32 0..255, ratio r): resized by
    ``r = min(h / H, w / W)``, pasted top-left on a ``pad_value`` canvas (YOLOX's grey by
    default); channels untouched."""
    h_in, w_in = input_hw
    height, width = frame.shape[:2]
    ratio = min(h_in / height, w_in / width)
    new_w, new_h = int(width * ratio), int(height * ratio)
    canvas = np.full((h_in, w_in, 3), pad_value, np.uint8)  # (h, w, 3)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1).astype(np.float32), ratio


def nms_boxes(
    boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou: float
) -> np.ndarray:
    """Indices of the boxes (N, 4) xyxy kept by OpenCV's NMS, strongest first."""
    if len(boxes) == 0:
        return np.zeros(0, int)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)  # (N, 4)
    idx = np.asarray(
        cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, iou), int
    ).reshape(-1)
    return idx[np.argsort(-scores[idx], kind="stable")]


# ---- person crops --------------------------------------------------------------------------


@dataclass
class Crop:
    """Where a crop comes from: centre (x, y) and size (w, h) in frame pixels; ``axes`` (2, 2),
    when set, holds the frame directions of the crop's x and y axes (rows, a rotation: hand
    crops turned so that the fingers point up); None is an axis-aligned crop."""

    frame: int
    centre: np.ndarray
    scale: np.ndarray
    axes: np.ndarray | None = None


def box_to_crop(
    frame: int, box: np.ndarray, input_hw: tuple[int, int], padding: float = BBOX_PADDING
) -> Crop:
    """Box xyxy -> crop centre and size: padded by ``padding``, fitted to the input's aspect."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = input_hw[1] / input_hw[0]  # width / height of the model input
    w, h = (w, w / aspect) if w > h * aspect else (h * aspect, h)
    return Crop(frame, np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float64), np.array([w, h]))


def crop_matrix(crop: Crop, input_hw: tuple[int, int]) -> np.ndarray:
    """2x3 affine frame -> crop: uniform scale input_w / crop_w, centre to the input centre."""
    s = input_hw[1] / crop.scale[0]
    if crop.axes is not None:  # rotated: p' = s * axes @ (p - centre) + input centre
        linear = s * np.asarray(crop.axes, np.float64)  # (2, 2)
        shift = np.array([input_hw[1] / 2, input_hw[0] / 2]) - linear @ crop.centre
        return np.concatenate([linear, shift[:, None]], 1)
    cx, cy = crop.centre
    return np.array(
        [[s, 0.0, input_hw[1] / 2 - s * cx], [0.0, s, input_hw[0] / 2 - s * cy]], np.float64
    )


def crop_patch(frame: np.ndarray, crop: Crop, input_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 crop, bilinear (outside the frame: black)."""
    return cv2.warpAffine(
        frame, crop_matrix(crop, input_hw), (input_hw[1], input_hw[0]), flags=cv2.INTER_LINEAR
    )


def crop_to_frame(xy: np.ndarray, crops: list[Crop], input_hw: tuple[int, int]) -> np.ndarray:
    """(M, K, 2) crop pixels -> frame pixels, through the inverse of :func:`crop_matrix`."""
    if any(c.axes is not None for c in crops):  # p = axes^T @ (p' - input centre) / s + centre
        out = np.empty(np.shape(xy), np.float64)
        middle = np.array([input_hw[1] / 2, input_hw[0] / 2])
        for i, c in enumerate(crops):
            axes = np.eye(2) if c.axes is None else np.asarray(c.axes, np.float64)
            s = input_hw[1] / c.scale[0]
            out[i] = (np.asarray(xy[i]) - middle) @ axes / s + c.centre  # (K, 2)
        return out
    centre = np.stack([c.centre for c in crops])[:, None]  # (M, 1, 2)
    scale = np.stack([c.scale for c in crops])[:, None]  # (M, 1, 2)
    return xy / np.array([input_hw[1], input_hw[0]]) * scale + centre - scale / 2


# ---- backend -------------------------------------------------------------------------------


class TopDownBackend(PoseBackend):
    """Person boxes per frame, one crop per box, keypoints per crop, grouped back by frame."""

    runtime = "onnx"

    @property
    @abstractmethod
    def crop_hw(self) -> tuple[int, int]:
        """(h, w) of the crops the keypoint model takes."""

    @abstractmethod
    def detect_boxes(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person boxes (M, 4) xyxy in frame pixels and scores (M,) of every frame."""

    @abstractmethod
    def crop_keypoints(self, frames: np.ndarray, crops: list[Crop]) -> np.ndarray:
        """(M, 133, 3) float32 keypoints (x, y, score) of every crop, in frame pixels."""

    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        check_frames(frames)
        crops = [
            box_to_crop(t, box, self.crop_hw)
            for t, (boxes, _) in enumerate(self.detect_boxes(frames))
            for box in boxes
        ]
        people = [np.zeros((0, NUM_KEYPOINTS, 3), np.float32) for _ in frames]
        if not crops:
            return people  # no box, no person: the crop model never runs on a whole frame
        keypoints = self.crop_keypoints(frames, crops)  # (M, 133, 3)
        frame_of = np.array([c.frame for c in crops])
        for t in range(len(frames)):
            people[t] = keypoints[frame_of == t]
        return people
