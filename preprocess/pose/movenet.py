"""``pose.backend=movenet``: MoveNet MultiPose Lightning (ONNX) run with onnxruntime.

The model takes one int32 RGB image ``[1, H, W, 3]`` with H and W multiples of 32 and returns
``[1, 6, 56]``: for each of 6 people, 17 x (y, x, score) normalised to [0, 1] of the *padded*
input, then a box (ymin, xmin, ymax, xmax) and the person score.

Preprocessing: the frame's long side is resized to ``pose.input_size`` rounded up to a multiple
of 32 (aspect kept), and the image is zero-padded at the bottom/right so both sides are
multiples of 32; decoding maps normalised coordinates through the padded size and back by the
per-axis resize factors, so keypoints land in the frame's own pixels.

Batching: the exported graph has batch 1 baked into internal Reshape nodes (marking the input's
batch dimension dynamic makes a batch of 2 fail in ``Transpose__1303``), so frames run one at a
time. Keypoint scores are returned as the model gives them (no ``min_score`` cut here).

Device: the session runs on ``pose.device`` through onnxruntime (``cuda`` needs
``onnxruntime-gpu``; ``.device`` is where it really runs).
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from preprocess.backends import require_model_file
from preprocess.config import PoseConfig
from preprocess.devices import onnx_session, session_device
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose.base import POSE_BACKENDS, PoseBackend, check_frames

log = logging.getLogger(__name__)

STRIDE = 32
MOVENET_HOWTO = (
    "Use MoveNet MultiPose Lightning as ONNX: the shared test assets ship it as "
    "models/movenet_multipose.onnx (set MCANIM_ASSETS); or convert Google's "
    "movenet/multipose/lightning (TF Hub / Kaggle Models) with tf2onnx "
    "(python -m tf2onnx.convert --saved-model DIR --output movenet_multipose.onnx)."
)


def input_geometry(height: int, width: int, input_size: int) -> tuple[int, int, int, int]:
    """(resized_h, resized_w, padded_h, padded_w) of a frame fed to MoveNet."""
    target = -(-input_size // STRIDE) * STRIDE  # long side, rounded up to a multiple of 32
    scale = target / max(height, width)
    h = max(1, round(height * scale))
    w = max(1, round(width * scale))
    return h, w, -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE


def prepare_frame(frame: np.ndarray, input_size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, Hp, Wp, 3) int32: resized, zero-padded at bottom/right."""
    height, width = frame.shape[:2]
    h, w, hp, wp = input_geometry(height, width, input_size)
    shrink = h < height
    resized = cv2.resize(
        frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    batch = np.zeros((1, hp, wp, 3), np.int32)  # (1, Hp, Wp, 3)
    batch[0, :h, :w] = resized
    return batch


def decode_output(
    output: np.ndarray, frame_size: tuple[int, int], input_size: int, person_score: float
) -> np.ndarray:
    """Model output (1, 6, 56) -> (N, 133, 3) float32 people in frame pixels (first 17 filled)."""
    height, width = frame_size
    h, w, hp, wp = input_geometry(height, width, input_size)
    people = output.reshape(-1, 56)  # (6, 56)
    keep = people[:, 55] >= person_score
    kps = people[keep, :51].reshape(-1, 17, 3)  # (N, 17, 3) as (y, x, score)
    out = np.zeros((kps.shape[0], NUM_KEYPOINTS, 3), np.float32)
    out[:, :17, 0] = kps[..., 1] * wp * (width / w)  # normalised padded -> resized -> frame px
    out[:, :17, 1] = kps[..., 0] * hp * (height / h)
    out[:, :17, 2] = kps[..., 2]
    return out


@POSE_BACKENDS.register("movenet")
class MoveNetBackend(PoseBackend):
    """17-point COCO body pose of up to 6 people per frame; tracking links them over frames."""

    name = "movenet"
    runtime = "onnx"

    def __init__(self, cfg: PoseConfig) -> None:
        super().__init__(cfg)
        path = require_model_file(cfg.model, "pose.model", MOVENET_HOWTO)
        self.session: Any = onnx_session(path, cfg.device, cfg.threads, "pose.device")
        self.device = session_device(self.session)
        self._input = self.session.get_inputs()[0].name
        log.info("MoveNet %s on %s", path, self.device)

    def detect_frame(self, frame: np.ndarray) -> np.ndarray:
        """One (H, W, 3) uint8 RGB frame -> (N, 133, 3) float32 people."""
        batch = prepare_frame(frame, self.cfg.input_size)
        (output,) = self.session.run(None, {self._input: batch})  # (1, 6, 56)
        return decode_output(output, frame.shape[:2], self.cfg.input_size, self.cfg.person_score)

    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        check_frames(frames)
        return [self.detect_frame(frame) for frame in frames]  # batch 1 only (module doc)
