"""``pose.backend=dwpose``: DWPose whole-body pose (133 keypoints), top-down, with onnxruntime.

Two public ONNX files (hub repo ``yzd-v/DWPose``), run as DWPose and rtmlib run them:

1. **Person detector** ``yolox_l.onnx`` (``pose.detector``): input ``[B, 3, 640, 640]`` float32
   raw 0..255 **BGR** (YOLOX is trained on OpenCV's BGR images, no normalisation), the frame
   resized by ``r = min(640 / H, 640 / W)`` and pasted top-left on a 114-grey canvas
   (letterbox). Output ``[B, 8400, 85]``: the raw head over the 80x80, 40x40 and 20x20 grids of
   strides 8, 16, 32 (in that order, row-major), each ``(dx, dy, log w, log h, objectness,
   80 class scores)``; centre = (cell + d) * stride, size = exp(log size) * stride, person
   score = objectness * class-0 score. Boxes above ``pose.person_score`` go through NMS
   (IoU ``pose.detector_nms``) and back to frame pixels by ``/ r``.
2. **Pose model** ``dw-ll_ucoco_384.onnx`` (``pose.model``, RTMPose-l distilled): input
   ``[B, 3, 384, 288]`` float32 **RGB** normalised with ImageNet mean/std on the 0..255 scale
   (mmpose's ``bgr_to_rgb=True`` data preprocessor). Each box becomes a crop: centre = box
   centre, size = box size * 1.25, widened or heightened to the 288:384 aspect, warped with
   ``cv2.warpAffine`` (bilinear) so that the centre lands on (144, 192). Outputs ``simcc_x``
   ``[B, 133, 576]`` and ``simcc_y`` ``[B, 133, 768]`` (SimCC, split ratio 2): a keypoint is at
   ``argmax / 2`` crop pixels, mapped back through the inverse affine; its score is the
   smaller of the two maxima (as mmpose's ``get_simcc_maximum``), negative scores become 0.

A frame without detections has no people (DWPose would then run the pose model on the whole
frame; we do not invent a person). Keypoints come back in the COCO-WholeBody 133 layout of
DESIGN §3 as the model emits it; the OpenPose-18 reordering happens only in the renderer.

Batching: the batch dimension of each ONNX file is read from the file. A symbolic (dynamic)
batch runs up to ``pose.batch_size`` frames (detector) or person crops of many frames (pose
model) per call; a fixed batch ``B`` runs chunks of exactly ``B`` (the last chunk padded by
repetition, its extra outputs dropped). See docs/extractors.md for what the public files allow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from preprocess.config import PoseConfig
from preprocess.devices import onnx_providers, onnx_session_options
from preprocess.pose.base import PoseBackend, register_pose_backend, require_model_file
from preprocess.pose.layout import NUM_KEYPOINTS
from preprocess.weights_id import backend_identity

log = logging.getLogger(__name__)

DETECTOR_HOWTO = (
    "It is DWPose's person detector yolox_l.onnx from the hub repo yzd-v/DWPose: run "
    "`python -m preprocess.weights fetch dwpose` on a machine with network (it lands in "
    "$MCANIM_WEIGHTS/dwpose/) or download https://huggingface.co/yzd-v/DWPose/resolve/main/"
    "yolox_l.onnx and set pose.detector to its path."
)
POSE_HOWTO = (
    "It is DWPose's whole-body model dw-ll_ucoco_384.onnx from the hub repo yzd-v/DWPose: run "
    "`python -m preprocess.weights fetch dwpose` on a machine with network (it lands in "
    "$MCANIM_WEIGHTS/dwpose/) or download https://huggingface.co/yzd-v/DWPose/resolve/main/"
    "dw-ll_ucoco_384.onnx and set pose.model to its path."
)

YOLOX_STRIDES = (8, 16, 32)
YOLOX_PAD_VALUE = 114
BBOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB, 0..255 scale
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


# ---- ONNX sessions --------------------------------------------------------------------------


class OnnxModel:
    """An onnxruntime session with its input geometry and batch rule read from the file."""

    def __init__(self, path: Path, device: str, threads: int, default_hw: tuple[int, int]):
        import onnxruntime as ort

        self.session: Any = ort.InferenceSession(
            str(path), sess_options=onnx_session_options(threads), providers=onnx_providers(device)
        )
        spec = self.session.get_inputs()[0]
        self.input = spec.name
        shape = list(spec.shape)
        if len(shape) != 4:
            raise ValueError(f"{path}: expected an NCHW image input, got shape {shape}")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        dims = [d if isinstance(d, int) and d > 0 else None for d in shape[2:]]
        self.hw = (dims[0] or default_hw[0], dims[1] or default_hw[1])
        self.provider = self.session.get_providers()[0]

    def run(self, batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """All outputs for ``batch`` (N, 3, h, w), in chunks the model's batch dim allows."""
        n = len(batch)
        step = self.fixed_batch or max(1, batch_size)
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, step):
            part = batch[start : start + step]
            real = len(part)
            if self.fixed_batch and real < self.fixed_batch:  # pad a fixed batch by repetition
                part = np.concatenate([part, np.repeat(part[-1:], self.fixed_batch - real, 0)])
            outs = self.session.run(None, {self.input: np.ascontiguousarray(part, np.float32)})
            chunks.append([o[:real] for o in outs])
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


# ---- detector: letterbox + YOLOX head decoding ---------------------------------------------


def letterbox(frame_bgr: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 BGR -> ((3, h, w) float32 0..255 on a 114 canvas, ratio r)."""
    h_in, w_in = input_hw
    height, width = frame_bgr.shape[:2]
    ratio = min(h_in / height, w_in / width)
    new_w, new_h = int(width * ratio), int(height * ratio)
    canvas = np.full((h_in, w_in, 3), YOLOX_PAD_VALUE, np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1).astype(np.float32), ratio


def yolox_grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) cell (x, y) and (A, 1) stride of every anchor, strides 8, 16, 32 row-major."""
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        gh, gw = input_hw[0] // stride, input_hw[1] // stride
        xs, ys = np.meshgrid(np.arange(gw), np.arange(gh))
        cells.append(np.stack([xs, ys], -1).reshape(-1, 2))
        strides.append(np.full((gh * gw, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode_yolox(
    raw: np.ndarray,
    input_hw: tuple[int, int],
    ratio: float,
    score_threshold: float,
    nms_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw head (A, 5 + classes) -> person boxes (M, 4) xyxy in frame pixels and
    their scores (M,), strongest first."""
    cells, strides = yolox_grid(input_hw)
    if raw.shape[0] != len(cells):
        raise ValueError(
            f"detector output has {raw.shape[0]} anchors, expected {len(cells)} for an input of "
            f"{input_hw} with strides {YOLOX_STRIDES}"
        )
    centre = (raw[:, :2] + cells) * strides  # (A, 2) input pixels
    size = np.exp(np.minimum(raw[:, 2:4], 30.0)) * strides  # (A, 2)
    score = raw[:, 4] * raw[:, 5]  # objectness * person (class 0)
    keep = score > score_threshold
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)[keep] / ratio
    score = score[keep]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    idx = np.asarray(
        cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), score_threshold, nms_iou), int
    ).reshape(-1)
    idx = idx[np.argsort(-score[idx], kind="stable")]
    return boxes[idx].astype(np.float32), score[idx].astype(np.float32)


# ---- pose model: affine crops + SimCC decoding ---------------------------------------------


@dataclass
class Crop:
    """Where a person crop comes from: centre (x, y) and size (w, h) in frame pixels."""

    frame: int
    centre: np.ndarray
    scale: np.ndarray


def box_to_crop(frame: int, box: np.ndarray, input_hw: tuple[int, int]) -> Crop:
    """Box xyxy -> crop centre and size: padded by 1.25 and fitted to the input's aspect."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = (x2 - x1) * BBOX_PADDING, (y2 - y1) * BBOX_PADDING
    aspect = input_hw[1] / input_hw[0]  # width / height of the model input
    w, h = (w, w / aspect) if w > h * aspect else (h * aspect, h)
    return Crop(frame, np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float64), np.array([w, h]))


def crop_matrix(crop: Crop, input_hw: tuple[int, int]) -> np.ndarray:
    """2x3 affine frame -> crop: uniform scale input_w / crop_w, centre to the input centre."""
    s = input_hw[1] / crop.scale[0]
    cx, cy = crop.centre
    return np.array(
        [[s, 0.0, input_hw[1] / 2 - s * cx], [0.0, s, input_hw[0] / 2 - s * cy]], np.float64
    )


def crop_input(frame_rgb: np.ndarray, crop: Crop, input_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 normalised crop for the pose model."""
    patch = cv2.warpAffine(
        frame_rgb, crop_matrix(crop, input_hw), (input_hw[1], input_hw[0]), flags=cv2.INTER_LINEAR
    )
    return ((patch.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, crops: list[Crop], input_hw: tuple[int, int]
) -> np.ndarray:
    """(M, K, Wx), (M, K, Wy) -> (M, K, 3) float32 (x, y, score) in frame pixels."""
    xs = simcc_x.argmax(-1) / SIMCC_SPLIT_RATIO  # (M, K) crop pixels
    ys = simcc_y.argmax(-1) / SIMCC_SPLIT_RATIO
    score = np.minimum(simcc_x.max(-1), simcc_y.max(-1))  # (M, K)
    centre = np.stack([c.centre for c in crops])[:, None]  # (M, 1, 2)
    scale = np.stack([c.scale for c in crops])[:, None]  # (M, 1, 2)
    xy = np.stack([xs, ys], -1) / np.array([input_hw[1], input_hw[0]]) * scale + centre - scale / 2
    out = np.concatenate([xy, np.maximum(score, 0.0)[..., None]], -1)
    return out.astype(np.float32)


# ---- backend -------------------------------------------------------------------------------


@register_pose_backend("dwpose")
class DWPoseBackend(PoseBackend):
    """YOLOX-L person boxes, then DWPose's 133 whole-body keypoints per box."""

    name = "dwpose"

    def __init__(self, cfg: PoseConfig) -> None:
        super().__init__(cfg)
        detector = require_model_file(cfg.detector, "pose.detector", DETECTOR_HOWTO)
        model = require_model_file(cfg.model, "pose.model", POSE_HOWTO)
        self.detector = OnnxModel(detector, cfg.device, cfg.threads, (640, 640))
        self.pose = OnnxModel(model, cfg.device, cfg.threads, (384, 288))
        log.info(
            "DWPose detector %s (%s, batch %s), pose %s (%s, batch %s) on %s",
            detector.name,
            self.detector.hw,
            self.detector.fixed_batch or "dynamic",
            model.name,
            self.pose.hw,
            self.pose.fixed_batch or "dynamic",
            self.pose.provider,
        )

    def detect_boxes(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person boxes (M, 4) xyxy and scores (M,) of every (H, W, 3) uint8 RGB frame."""
        out = []
        step = max(self.cfg.batch_size, self.detector.fixed_batch or 1)
        for start in range(0, len(frames), step):  # bounded memory: one batch of inputs
            prepared = [letterbox(f[..., ::-1], self.detector.hw) for f in frames[start:][:step]]
            batch = np.stack([img for img, _ in prepared])  # (b, 3, 640, 640) BGR
            raw = self.detector.run(batch, self.cfg.batch_size)[0]  # (b, A, 85)
            out += [
                decode_yolox(
                    raw[i], self.detector.hw, ratio, self.cfg.person_score, self.cfg.detector_nms
                )
                for i, (_, ratio) in enumerate(prepared)
            ]
        return out

    def crop_keypoints(self, frames: np.ndarray, crops: list[Crop]) -> np.ndarray:
        """(M, 133, 3) keypoints of every crop, in frame pixels."""
        hw, parts = self.pose.hw, []
        step = max(self.cfg.batch_size, self.pose.fixed_batch or 1)
        names = [o.name for o in self.pose.session.get_outputs()]
        for start in range(0, len(crops), step):  # bounded memory: one batch of crops
            chunk = crops[start : start + step]
            batch = np.stack([crop_input(frames[c.frame], c, hw) for c in chunk])  # (b, 3, h, w)
            outs = self.pose.run(batch, self.cfg.batch_size)  # by name, else in file order
            simcc_x = outs[names.index("simcc_x")] if "simcc_x" in names else outs[0]
            simcc_y = outs[names.index("simcc_y")] if "simcc_y" in names else outs[1]
            parts.append(decode_simcc(simcc_x, simcc_y, chunk, hw))
        return np.concatenate(parts)

    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.shape}")
        hw = self.pose.hw
        crops = [
            box_to_crop(t, box, hw)
            for t, (boxes, _) in enumerate(self.detect_boxes(frames))
            for box in boxes
        ]
        people = [np.zeros((0, NUM_KEYPOINTS, 3), np.float32) for _ in frames]
        if not crops:
            return people
        keypoints = self.crop_keypoints(frames, crops)  # (M, K, 3)
        if keypoints.shape[1] != NUM_KEYPOINTS:
            raise ValueError(
                f"pose model gives {keypoints.shape[1]} keypoints, expected {NUM_KEYPOINTS} "
                "(COCO-WholeBody); is pose.model a whole-body DWPose/RTMPose file?"
            )
        frame_of = np.array([c.frame for c in crops])
        for t in range(len(frames)):
            people[t] = keypoints[frame_of == t]
        return people

    def identity(self) -> dict[str, object]:
        return backend_identity(
            self.name, self.cfg.model, detector=backend_identity("yolox", self.cfg.detector)
        )
