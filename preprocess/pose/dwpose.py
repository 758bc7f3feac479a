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
docs/design.md §3 as the model emits it; the OpenPose-18 reordering happens only in the renderer.

Batching: the batch dimension of each ONNX file is read from the file. A symbolic (dynamic)
batch runs up to ``pose.batch_size`` frames (detector) or person crops of many frames (pose
model) per call; a fixed batch ``B`` runs chunks of exactly ``B`` (the last chunk padded by
repetition, its extra outputs dropped). See docs/extractors.md for what the public files allow.

The model-independent steps (ONNX batching, letterbox, NMS, crops and their inverse, grouping
by frame) live in :mod:`preprocess.pose.topdown`; this module holds what is DWPose's own.
Both sessions run on ``pose.device`` (onnxruntime; ``.device`` is where they really run).
"""

from __future__ import annotations

import logging

import numpy as np

from preprocess.backends import require_model_file
from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose.base import POSE_BACKENDS
from preprocess.pose.topdown import (
    Crop,
    OnnxModel,
    TopDownBackend,
    crop_patch,
    crop_to_frame,
    letterbox,
    nms_boxes,
)
from preprocess.weights import backend_identity

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
SIMCC_SPLIT_RATIO = 2.0
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB, 0..255 scale
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


# ---- detector: YOLOX head decoding ---------------------------------------------------------


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
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)[keep] / ratio  # (M, 4)
    score = score[keep]
    idx = nms_boxes(boxes, score, score_threshold, nms_iou)
    return boxes[idx].astype(np.float32), score[idx].astype(np.float32)


# ---- pose model: normalised crops + SimCC decoding -----------------------------------------


def crop_input(frame_rgb: np.ndarray, crop: Crop, input_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 normalised crop for the pose model."""
    patch = crop_patch(frame_rgb, crop, input_hw)  # (h, w, 3) uint8
    return ((patch.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, crops: list[Crop], input_hw: tuple[int, int]
) -> np.ndarray:
    """(M, K, Wx), (M, K, Wy) -> (M, K, 3) float32 (x, y, score) in frame pixels."""
    xs = simcc_x.argmax(-1) / SIMCC_SPLIT_RATIO  # (M, K) crop pixels
    ys = simcc_y.argmax(-1) / SIMCC_SPLIT_RATIO
    score = np.minimum(simcc_x.max(-1), simcc_y.max(-1))  # (M, K)
    xy = crop_to_frame(np.stack([xs, ys], -1), crops, input_hw)  # (M, K, 2)
    out = np.concatenate([xy, np.maximum(score, 0.0)[..., None]], -1)
    return out.astype(np.float32)


# ---- backend -------------------------------------------------------------------------------


@POSE_BACKENDS.register("dwpose")
class DWPoseBackend(TopDownBackend):
    """YOLOX-L person boxes, then DWPose's 133 whole-body keypoints per box."""

    name = "dwpose"

    def __init__(self, cfg: PoseConfig) -> None:
        super().__init__(cfg)
        detector = require_model_file(cfg.detector, "pose.detector", DETECTOR_HOWTO)
        model = require_model_file(cfg.model, "pose.model", POSE_HOWTO)
        self.detector = OnnxModel(detector, cfg.device, cfg.threads, (640, 640), "pose.device")
        self.pose = OnnxModel(model, cfg.device, cfg.threads, (384, 288), "pose.device")
        self.device = self.pose.device
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

    @property
    def crop_hw(self) -> tuple[int, int]:
        return self.pose.hw

    def detect_boxes(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person boxes (M, 4) xyxy and scores (M,) of every (H, W, 3) uint8 RGB frame."""
        out = []
        step = self.detector.step(self.cfg.batch_size)
        for start in range(0, len(frames), step):  # bounded memory: one batch of inputs
            prepared = [  # YOLOX reads BGR
                letterbox(f[..., ::-1], self.detector.hw, YOLOX_PAD_VALUE)
                for f in frames[start:][:step]
            ]
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
        hw, parts, names = self.pose.hw, [], self.pose.outputs
        step = self.pose.step(self.cfg.batch_size)
        for start in range(0, len(crops), step):  # bounded memory: one batch of crops
            chunk = crops[start : start + step]
            batch = np.stack([crop_input(frames[c.frame], c, hw) for c in chunk])  # (b, 3, h, w)
            outs = self.pose.run(batch, self.cfg.batch_size)  # by name, else in file order
            simcc_x = outs[names.index("simcc_x")] if "simcc_x" in names else outs[0]
            simcc_y = outs[names.index("simcc_y")] if "simcc_y" in names else outs[1]
            parts.append(decode_simcc(simcc_x, simcc_y, chunk, hw))
        keypoints = np.concatenate(parts)  # (M, K, 3)
        if keypoints.shape[1] != NUM_KEYPOINTS:
            raise ValueError(
                f"pose model gives {keypoints.shape[1]} keypoints, expected {NUM_KEYPOINTS} "
                "(COCO-WholeBody); is pose.model a whole-body DWPose/RTMPose file?"
            )
        return keypoints

    def identity_extras(self) -> dict[str, object]:
        return {"detector": backend_identity("yolox", self.cfg.detector)}
