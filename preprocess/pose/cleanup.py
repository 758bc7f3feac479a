"""Per-frame detection cleanup before tracking: torso check and keypoint NMS.

Two failure modes of single-shot multi-person models, seen with MoveNet on the shared dance
video, would otherwise become extra "characters" (and fake occlusion):

* **fragments without a torso**: a limb pair detected as a separate person (a dancer's legs
  labelled as elbows and wrists). A detection needs a confident shoulder or hip
  (``pose.require_torso``); a person cut by the frame edge keeps a hip or a shoulder.
* **duplicates**: the same person returned twice (seen as an exact copy). They are found by
  the COCO object keypoint similarity (OKS) over the body points both detections are
  confident in, with the stronger detection's keypoint box as the scale (``pose.nms_oks``).

Precomputed poses are taken as given (no cleanup). No library ships OKS-NMS for bare keypoint
arrays outside a model framework (mmpose's is tied to its data structures), hence these lines.
"""

from __future__ import annotations

import numpy as np

from preprocess.config import PoseConfig
from preprocess.pose.tracking import keypoint_box

TORSO = (5, 6, 11, 12)  # shoulders and hips in the COCO body order

# COCO body keypoint sigmas (the OKS constants of the COCO keypoint benchmark), nose .. ankles.
COCO_BODY_SIGMAS = np.array(
    [
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
        0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
    ],
    np.float32,
)  # fmt: skip


def keypoint_similarity(a: np.ndarray, b: np.ndarray, area: float, min_score: float) -> float:
    """OKS of two (133, 3) people over the COCO body points confident in both.

    ``area`` is the object scale s² in pixels² (here: the stronger detection's keypoint box
    area). Fewer than 2 shared points: 0 (too little evidence to call them the same person).
    """
    both = (a[:17, 2] >= min_score) & (b[:17, 2] >= min_score)
    if both.sum() < 2:
        return 0.0
    d2 = ((a[:17, :2] - b[:17, :2]) ** 2).sum(-1)[both]
    k2 = (2 * COCO_BODY_SIGMAS[both]) ** 2
    return float(np.exp(-d2 / (2 * max(area, 1.0) * k2)).mean())


def suppress_duplicates(people: np.ndarray, min_score: float, threshold: float) -> np.ndarray:
    """(N, 133, 3) -> (M, 133, 3), M <= N: greedy OKS-NMS, strongest first.

    Strength is the sum of confident body-point scores, so a full detection beats a fragment.
    A detection whose OKS with a kept one is >= ``threshold`` is dropped. ``threshold`` <= 0
    disables suppression. Kept detections stay in their input order.
    """
    people = np.asarray(people, np.float32)
    if threshold <= 0 or len(people) < 2:
        return people
    scores = people[:, :17, 2]
    strength = np.where(scores >= min_score, scores, 0.0).sum(1)
    area = np.array([_box_area(p, min_score) for p in people])  # (N,) the OKS scale s²
    kept: list[int] = []
    for i in np.argsort(-strength, kind="stable"):
        if all(
            keypoint_similarity(people[j], people[i], area[j], min_score) < threshold for j in kept
        ):
            kept.append(int(i))
    return people[sorted(kept)]


def _box_area(keypoints: np.ndarray, min_score: float) -> float:
    box = keypoint_box(keypoints, min_score)
    return 0.0 if box is None else float((box[2] - box[0]) * (box[3] - box[1]))


def has_torso(people: np.ndarray, min_score: float) -> np.ndarray:
    """(N, 133, 3) -> (N,) bool: a shoulder or a hip is confident."""
    torso = np.asarray(people)[:, TORSO, 2]  # (N, 4)
    return np.asarray((torso >= min_score).any(axis=1))


def clean_detections(people: np.ndarray, cfg: PoseConfig) -> np.ndarray:
    """One frame's (N, 133, 3) detections without torso-less fragments and duplicates."""
    people = np.asarray(people, np.float32)
    if cfg.require_torso and len(people):
        people = people[has_torso(people, cfg.min_score)]
    return suppress_duplicates(people, cfg.min_score, cfg.nms_oks)
