"""``pose.backend=topdown``: the CPU top-down pose stack (person boxes -> MoveNet Thunder -> hands).

Per frame (all ONNX, onnxruntime; the machinery is :mod:`preprocess.pose.topdown`'s, shared
with DWPose):

1. **Person boxes** from the sources in ``pose.box_sources``, merged:
   ``nanodet`` — NanoDet-m (``pose.detector``; :mod:`preprocess.pose.nanodet`), class person,
   no cap on the number of people; ``multipose`` — MoveNet MultiPose (``pose.multipose``) run
   on the whole frame at every long side in ``pose.multipose_sizes`` (small sizes find people
   that fill the frame, large ones small pedestrians; at most 6 people per run), its person
   boxes above ``pose.person_score``. The union goes through NMS at IoU ``pose.box_merge_iou``
   (a high IoU: two overlapping people keep their boxes; the OKS-NMS after step 2 removes the
   duplicates of one person).
2. **Body**: MoveNet SinglePose Thunder (``pose.model``) on a square crop of each box, the box
   enlarged by ``pose.crop_padding`` (:func:`~preprocess.pose.topdown.box_to_crop`), input
   ``[1, 256, 256, 3]`` int32 RGB 0..255, output ``[1, 1, 17, 3]`` = (y, x, score) normalised
   to the crop; mapped back through the crop's inverse affine to frame pixels.
3. ``PoseBackend.people`` then drops torso-less fragments and duplicates by OKS-NMS
   (``pose.nms_oks``, :mod:`preprocess.pose.cleanup`) — before the hands, so no hand runs
   for a duplicate.
4. **Hands** (points 91..132) from MediaPipe's hand landmark model (``pose.hand_model``; empty:
   none) on crops placed from the elbow -> wrist direction, gated on wrist confidence and hand
   size: :mod:`preprocess.pose.hands`.

The identity recorded in every clip names the backend ``topdown`` with the sha256 of Thunder
(``model``) and of every other file it ran (``detector``, ``multipose``, ``hand_model``), so an
output made with another backend or other files is not resumed. Measured figures and the
choice of defaults: docs/pose.md.
"""

from __future__ import annotations

import logging

import numpy as np

from preprocess.backends import require_model_file
from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose import movenet
from preprocess.pose.base import POSE_BACKENDS, check_frames
from preprocess.pose.cleanup import clean_detections, keypoint_similarity
from preprocess.pose.hands import HAND_HOWTO, HandModel
from preprocess.pose.nanodet import NANODET_HOWTO, decode_nanodet, nanodet_input
from preprocess.pose.topdown import (
    Crop,
    OnnxModel,
    TopDownBackend,
    box_to_crop,
    crop_matrix,
    crop_patch,
    crop_to_frame,
    nms_boxes,
)
from preprocess.pose.tracking import box_iou, keypoint_box
from preprocess.weights import backend_identity

log = logging.getLogger(__name__)

BOX_SOURCES = ("nanodet", "multipose")
THUNDER_HOWTO = (
    "Use MoveNet SinglePose Thunder as ONNX: the shared test assets ship it as "
    "models/movenet_thunder.onnx (set MCANIM_ASSETS); or convert Google's "
    "movenet/singlepose/thunder with tf2onnx."
)


def multipose_boxes(
    output: np.ndarray, frame_size: tuple[int, int], input_size: int, person_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """MultiPose output (1, 6, 56) -> person boxes (M, 4) xyxy in frame pixels, scores (M,)."""
    height, width = frame_size
    h, w, hp, wp = movenet.input_geometry(height, width, input_size)
    people = output.reshape(-1, 56)  # (6, 56)
    people = people[people[:, 55] >= person_score]
    y0, x0, y1, x1 = (people[:, 51 + i] for i in range(4))  # normalised to the padded input
    sx, sy = wp * width / w, hp * height / h
    boxes = np.stack([x0 * sx, y0 * sy, x1 * sx, y1 * sy], 1)  # (M, 4)
    return boxes.astype(np.float32), people[:, 55].astype(np.float32)


COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
"""COCO body point of the mirrored image: nose stays, left and right swap."""
UPPER_PART = 0.55
"""Retry crop: the top this fraction of a person box (people behind are hidden from below)."""


def containment(keypoints: np.ndarray, boxes: np.ndarray, min_score: float) -> np.ndarray:
    """(M,) fraction of each person's confident body points inside its box (M, 4) enlarged by
    10% (-1 without a confident point): how well the keypoints belong to the box."""
    xy, score = keypoints[:, :17, :2], keypoints[:, :17, 2]  # (M, 17, 2), (M, 17)
    centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2  # (M, 1, 2)
    half = (boxes[:, None, 2:] - boxes[:, None, :2]) * 0.55  # (M, 1, 2)
    inside = (np.abs(xy - centre) <= half).all(-1) & (score >= min_score)  # (M, 17)
    confident = (score >= min_score).sum(1)
    return np.where(confident > 0, inside.sum(1) / np.maximum(confident, 1), -1.0)


def stolen_crops(
    keypoints: np.ndarray,
    boxes: np.ndarray,
    frame_of: np.ndarray,
    inside: np.ndarray,
    cfg: PoseConfig,
) -> np.ndarray:
    """(M,) bool: the answer of a box duplicates (OKS >= ``pose.nms_oks``) the answer of
    another box of the frame that is not the same person's box (IoU < 0.5), and fits its own
    box worse: Thunder took the neighbour, and this box's person is still to be found."""
    out = np.zeros(len(boxes), bool)
    if cfg.nms_oks <= 0:
        return out
    for i in range(len(boxes)):
        area = box_area(keypoints[i], cfg.min_score)
        for j in np.flatnonzero(frame_of == frame_of[i]):
            if (
                j != i
                and inside[j] > inside[i]
                and box_iou(boxes[i], boxes[j]) < 0.5
                and keypoint_similarity(keypoints[j], keypoints[i], area, cfg.min_score)
                >= cfg.nms_oks
            ):
                out[i] = True
                break
    return out


def detector_views(frame: np.ndarray, tiles: bool) -> list[tuple[int, int, np.ndarray]]:
    """(x0, y0, image) the detector looks at: the whole frame and, with ``tiles``, overlapping
    squares of the short side along the long side (small people seen twice as large in a
    16:9 or 4:3 frame), each with its offset in the frame."""
    views = [(0, 0, frame)]
    height, width = frame.shape[:2]
    side, long = min(height, width), max(height, width)
    if not tiles or long < 1.2 * side:
        return views
    n = int(np.ceil(long / side))  # squares that cover the long side, overlapping
    for start in np.linspace(0, long - side, n).round().astype(int):
        if width >= height:
            views.append((int(start), 0, frame[:, start : start + side]))
        else:
            views.append((0, int(start), frame[start : start + side]))
    return views


def box_area(person: np.ndarray, min_score: float) -> float:
    """Area of a (133, 3) person's keypoint box (the OKS scale s², as the cleanup's)."""
    box = keypoint_box(person, min_score)
    return 0.0 if box is None else float((box[2] - box[0]) * (box[3] - box[1]))


def fuse(kept: np.ndarray, raw: np.ndarray, min_score: float, threshold: float) -> np.ndarray:
    """(K, 133, 3) people kept by OKS-NMS, each body point replaced by the score-weighted mean
    of that point over the raw detections (N, 133, 3) that duplicate the person (OKS with it
    >= ``threshold``) and are confident there; scores stay those of the kept detection."""
    out = kept.copy()
    for i, person in enumerate(kept):
        area = box_area(person, min_score)
        dup = [r for r in raw if keypoint_similarity(person, r, area, min_score) >= threshold]
        if len(dup) < 2:
            continue
        group = np.stack(dup)[:, :17]  # (D, 17, 3)
        w = np.where(group[..., 2] >= min_score, group[..., 2], 0.0)[..., None]  # (D, 17, 1)
        mean = (group[..., :2] * w).sum(0) / np.maximum(w.sum(0), 1e-6)  # (17, 2)
        has = w.sum(0)[:, 0] > 0
        out[i, :17, :2][has] = mean[has]
    return out


def mask_outside(
    patch: np.ndarray, crop: Crop, box: np.ndarray, input_hw: tuple[int, int], margin: float
) -> None:
    """Blacken the (h, w, 3) crop outside ``box`` enlarged by ``margin`` (in place)."""
    m = crop_matrix(crop, input_hw)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw_, hh = (box[2] - box[0]) * margin / 2, (box[3] - box[1]) * margin / 2
    x0, y0 = m @ np.array([cx - hw_, cy - hh, 1.0])
    x1, y1 = m @ np.array([cx + hw_, cy + hh, 1.0])
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
    patch[:y0] = 0
    patch[y1:] = 0
    patch[:, :x0] = 0
    patch[:, x1:] = 0


CARRY_PADDING = 1.2
"""A carried box is the previous frame's keypoint box enlarged by this factor (the person
moves, and the points confident last frame may not span the whole body)..."""
CARRY_SCORE = 0.1
"""...spanning the body points scored at least this (a leg scored 0.2 in a blurred frame is
still a leg: a box of the confident points only shrinks from frame to frame)..."""
CARRY_ASPECT = 0.6
"""...and at least this fraction of its height wide (a walker's keypoint box is narrow; the
crop mask would cut the leading leg of the next frame)."""


def carried_boxes(people: np.ndarray) -> np.ndarray:
    """(K, 4) xyxy boxes of the people (K, 133, 3) of the previous frame: the box of each
    person's body points scored >= :data:`CARRY_SCORE`, enlarged by :data:`CARRY_PADDING`
    about its centre and widened to :data:`CARRY_ASPECT` of its height."""
    boxes = [keypoint_box(p[:17], CARRY_SCORE) for p in people]
    kept = [b for b in boxes if b is not None]
    if not kept:
        return np.zeros((0, 4), np.float32)
    box = np.stack(kept)  # (K, 4)
    centre, size = (box[:, :2] + box[:, 2:]) / 2, (box[:, 2:] - box[:, :2]) * CARRY_PADDING
    size[:, 0] = np.maximum(size[:, 0], CARRY_ASPECT * size[:, 1])
    return np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)


def unmatched(carried: np.ndarray, detected: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """The carried boxes (K, 4) that overlap no detected box (M, 4) at ``iou`` or more: the
    people a key frame's detector missed, still followed."""
    keep = [all(box_iou(c, d) < iou for d in detected) for c in carried]
    return carried[np.asarray(keep, bool)] if len(carried) else carried


@POSE_BACKENDS.register("topdown")
class TopDownMoveNetBackend(TopDownBackend):
    """Merged NanoDet / multi-scale MultiPose boxes, Thunder per box, gated hands."""

    name = "topdown"

    def __init__(self, cfg: PoseConfig) -> None:
        super().__init__(cfg)
        unknown = set(cfg.box_sources) - set(BOX_SOURCES)
        if unknown or not cfg.box_sources:
            raise ValueError(
                f"pose.box_sources={cfg.box_sources!r}: give one or more of {BOX_SOURCES}"
            )
        if cfg.detect_every < 1:
            raise ValueError(f"pose.detect_every={cfg.detect_every}: give 1 or more")
        model = require_model_file(cfg.model, "pose.model", THUNDER_HOWTO)
        self.pose = OnnxModel(
            model, cfg.device, cfg.threads, (256, 256), "pose.device", "NHWC", parallel=True
        )
        self.device = self.pose.device
        self.detector = self.multipose = None
        if "nanodet" in cfg.box_sources:
            path = require_model_file(cfg.detector, "pose.detector", NANODET_HOWTO)
            self.detector = OnnxModel(
                path, cfg.device, cfg.threads, (416, 416), "pose.device", parallel=True
            )
        if "multipose" in cfg.box_sources:
            path = require_model_file(cfg.multipose, "pose.multipose", movenet.MOVENET_HOWTO)
            self.multipose = OnnxModel(path, cfg.device, cfg.threads, (0, 0), "pose.device", "NHWC")
        self.hands = None
        if cfg.hand_model:
            path = require_model_file(cfg.hand_model, "pose.hand_model", HAND_HOWTO)
            hand = OnnxModel(path, cfg.device, cfg.threads, (224, 224), "pose.device", "NHWC")
            self.hands = HandModel(hand, cfg.min_score, cfg.hand_min_size, cfg.hand_score)
        log.info(
            "top-down pose: boxes %s, Thunder %s, hands %s on %s",
            "+".join(cfg.box_sources),
            model.name,
            cfg.hand_model or "off",
            self.pose.provider,
        )

    @property
    def crop_hw(self) -> tuple[int, int]:
        return self.pose.hw

    def detect_boxes(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Merged person boxes (M, 4) xyxy and scores (M,) of every (H, W, 3) RGB frame."""
        return [self.frame_boxes(frame) for frame in frames]  # the box models take batch 1

    def frame_boxes(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg, boxes, scores = self.cfg, [], []
        if self.detector is not None:
            views = detector_views(frame, cfg.detector_tiles)
            inputs = [nanodet_input(tile, self.detector.hw) for _, _, tile in views]
            outs = self.detector.run(np.stack([image for image, _ in inputs]), 1)  # views at once
            hw, nms = self.detector.hw, cfg.detector_nms
            for i, ((x0, y0, _), (_, ratio)) in enumerate(zip(views, inputs, strict=True)):
                view = [o[i : i + 1] for o in outs]
                b, s = decode_nanodet(view, hw, ratio, cfg.person_score, nms)
                boxes.append(b + np.array([x0, y0, x0, y0], np.float32))
                scores.append(s)
        if self.multipose is not None:
            for size in cfg.multipose_sizes:
                batch = movenet.prepare_frame(frame, size)  # (1, Hp, Wp, 3) int32
                (output,) = self.multipose.session.run(None, {self.multipose.input: batch})
                b, s = multipose_boxes(output, frame.shape[:2], size, cfg.person_score)
                boxes.append(b)
                scores.append(s)
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)  # (M, 4), (M,)
        keep = nms_boxes(all_boxes, all_scores, 0.0, cfg.box_merge_iou)
        return all_boxes[keep], all_scores[keep]

    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        """Body keypoints of every box (untracked, duplicates kept: see :meth:`people`)."""
        check_frames(frames)
        return self.boxes_keypoints(frames, [boxes for boxes, _ in self.detect_boxes(frames)])

    def boxes_keypoints(self, frames: np.ndarray, boxes_of: list[np.ndarray]) -> list[np.ndarray]:
        """Body keypoints (N_t, 133, 3) of the person boxes (N_t, 4) of every frame, each box's
        answer checked and retried on the box's upper part when it is not its person."""
        people = [np.zeros((0, NUM_KEYPOINTS, 3), np.float32) for _ in frames]
        found = [(t, box) for t, boxes in enumerate(boxes_of) for box in boxes]
        if not found:
            return people  # no box, no person
        cfg = self.cfg
        boxes = np.stack([box for _, box in found])  # (M, 4)
        keypoints = self.box_keypoints(frames, [t for t, _ in found], boxes)  # (M, 133, 3)
        frame_of = np.array([t for t, _ in found])
        inside = containment(keypoints, boxes, cfg.min_score)  # (M,)
        stolen = stolen_crops(keypoints, boxes, frame_of, inside, cfg)  # (M,) bool
        retry = np.flatnonzero(stolen | ((inside >= 0) & (inside < cfg.retry_containment)))
        if len(retry):  # the crop's centre fell on another person: try the box's upper part
            upper = boxes[retry].copy()
            upper[:, 3] = upper[:, 1] + UPPER_PART * (upper[:, 3] - upper[:, 1])
            again = self.box_keypoints(frames, list(frame_of[retry]), upper)
            better = containment(again, boxes[retry], cfg.min_score) >= inside[retry]
            keypoints[retry[better]] = again[better]
        return [keypoints[frame_of == t] for t in range(len(frames))]

    def box_keypoints(
        self,
        frames: np.ndarray,
        frame_of: list[int],
        boxes: np.ndarray,
        padding: float = 0.0,
    ) -> np.ndarray:
        """(M, 133, 3) keypoints of Thunder on the square crop of every box (M, 4)."""
        crops = [
            box_to_crop(t, box, self.crop_hw, padding or self.cfg.crop_padding)
            for t, box in zip(frame_of, boxes, strict=True)
        ]
        return self.crop_keypoints(frames, crops, boxes)

    def crop_keypoints(
        self, frames: np.ndarray, crops: list[Crop], boxes: np.ndarray | None = None
    ) -> np.ndarray:
        """(M, 133, 3) keypoints of every crop (the 17 body points), in frame pixels; with
        ``boxes`` (M, 4), each crop is blackened outside its box (``pose.crop_mask``)."""
        hw = self.pose.hw
        batch = np.stack([crop_patch(frames[c.frame], c, hw) for c in crops])  # (M, 256, 256, 3)
        if self.cfg.crop_mask > 0 and boxes is not None:
            for patch, crop, box in zip(batch, crops, boxes, strict=True):
                mask_outside(patch, crop, box, hw, self.cfg.crop_mask)
        raw = self.pose.run(batch, 1)[0].reshape(len(crops), 17, 3)  # (y, x, score) in [0, 1]
        if self.cfg.flip_test:  # mirrored crops, mirrored back, left/right swapped: averaged
            flipped = self.pose.run(batch[:, :, ::-1], 1)[0].reshape(len(crops), 17, 3)
            flipped = flipped[:, COCO_FLIP]
            flipped[..., 1] = 1.0 - flipped[..., 1]
            raw = (raw + flipped) / 2
        xy = raw[..., 1::-1] * np.array([hw[1], hw[0]])  # (M, 17, 2) crop pixels (x, y)
        out = np.zeros((len(crops), NUM_KEYPOINTS, 3), np.float32)
        out[:, :17, :2] = crop_to_frame(xy, crops, hw)
        out[:, :17, 2] = raw[..., 2]
        return out

    def people(self, frames: np.ndarray) -> list[np.ndarray]:
        """Cleaned body detections (OKS-NMS), then the hands of the people kept. With
        ``pose.detect_every`` > 1 the frames run in order, boxes carried between key frames
        (:meth:`carried_people`)."""
        if self.cfg.detect_every > 1:
            people = self.carried_people(frames)
        else:
            people = [self.clean(raw) for raw in self.detect_frames(frames)]
        return people if self.hands is None else self.hands.add_hands(frames, people)

    def clean(self, raw: np.ndarray) -> np.ndarray:
        """One frame's raw answers (N, 133, 3) -> its people: cleanup, then duplicates fused."""
        kept = clean_detections(raw, self.cfg)
        if self.cfg.fuse_duplicates:
            kept = fuse(kept, raw, self.cfg.min_score, self.cfg.nms_oks)
        return kept

    def carried_people(self, frames: np.ndarray) -> list[np.ndarray]:
        """Box propagation: the box sources run on every ``pose.detect_every``-th frame and
        on every frame that follows one without people; on the other frames each person's box
        is the previous frame's keypoint box (:func:`carried_boxes`), so Thunder runs once per
        person and the box models not at all. On a key frame the carried boxes join the
        detected ones (a person the detector misses there is still followed)."""
        check_frames(frames)
        cfg, out = self.cfg, list[np.ndarray]()
        previous = np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        for t in range(len(frames)):
            boxes = carried_boxes(previous)  # (K, 4)
            if t % cfg.detect_every == 0 or not len(boxes):
                detected, _ = self.frame_boxes(frames[t])  # (M, 4)
                boxes = np.concatenate([detected, unmatched(boxes, detected)])
            (raw,) = self.boxes_keypoints(frames[t : t + 1], [boxes])
            previous = self.clean(raw)
            out.append(previous)
        return out

    def identity_extras(self) -> dict[str, object]:
        cfg, extras = self.cfg, dict[str, object]()
        if self.detector is not None:
            extras["detector"] = backend_identity("nanodet", cfg.detector)
        if self.multipose is not None:
            extras["multipose"] = backend_identity("movenet_multipose", cfg.multipose)
        if self.hands is not None:
            extras["hands"] = backend_identity("hand_landmark_full", cfg.hand_model)
        return extras
