"""Hands (COCO-WholeBody keypoints 91..132) from MediaPipe's hand landmark model, placed by the body.

Used by ``pose.backend=topdown`` (:mod:`preprocess.pose.thunder`) after the body keypoints:
for each side (left: elbow 7, wrist 9 -> points 91..111; right: elbow 8, wrist 10 -> points
112..132) a hand crop is placed from the elbow -> wrist direction, rotated so that this
direction points up in the crop (the model is trained on upright hands, fingers up):

- the forearm ``f = wrist - elbow``; the hand's scale ``L = max(|f|, HAND_TORSO * torso)``
  (torso = shoulder-hip distance of that side; a forearm pointing at the camera looks short);
- centre ``wrist + HAND_SHIFT * L * f / |f|``, square side ``HAND_CROP * L``.

**Gate** (a hand the model does not see is absent, not invented): a side is tried only when
its wrist and elbow scores reach ``pose.min_score`` and the hand is large enough to be seen,
``HAND_LENGTH * L >= pose.hand_min_size`` (estimated wrist-to-fingertip length in frame
pixels); its 21 points are kept only when the model's hand presence score reaches
``pose.hand_score``. Everything else stays at score 0. Kept points all carry the presence
score (the model gives no per-point confidence).

Model (shared assets ``models/hand_landmark_full.onnx``): input ``[1, 224, 224, 3]`` float32
RGB in [0, 1] (NHWC); outputs ``[1, 63]`` = 21 x (x, y, z), x/y in pixels of the 224 input
(the landmarks, in COCO-WholeBody's hand order: wrist, then thumb, index, middle, ring, little
finger from base to tip), ``[1, 1]`` presence and ``[1, 1]`` handedness (both probabilities),
``[1, 63]`` world coordinates (unused). Outputs are told apart by shape and range, not names:
the two 63-wide ones by their scale (pixels vs metres), the two scalars by the file's names
(``Identity_2:0`` presence, ``Identity_1:0`` handedness, checked against the assets README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocess.pose.topdown import Crop, OnnxModel, crop_patch, crop_to_frame

LEFT, RIGHT = 0, 1
SIDES = {LEFT: (7, 9, 5, 11, 91), RIGHT: (8, 10, 6, 12, 112)}
"""side -> (elbow, wrist, shoulder, hip, first hand point) in the COCO-WholeBody order."""
HAND_POINTS = 21
HAND_SHIFT = 0.3
"""Crop centre: this many hand scales ``L`` beyond the wrist along the forearm."""
HAND_CROP = 0.9
"""Crop side, in hand scales ``L``."""
HAND_TORSO = 0.3
"""Lower bound of ``L`` as a fraction of the torso (foreshortened forearms)."""
HAND_LENGTH = 0.75
"""Wrist-to-fingertip length per forearm length (adult proportions), for the size gate."""
WRIST_AGREE = 0.35
"""A hand whose wrist landmark is farther than this many hand scales ``L`` from the body's
wrist belongs to something else (another hand, a hallucination): absent."""
LANDMARK_CROP = 2.0
LANDMARK_SHIFT = 0.1
"""Second pass (MediaPipe's landmarks-to-ROI: scale 2.0, shift -0.1 towards the fingers)."""
PRESENCE, HANDEDNESS = "Identity_1:0", "Identity_2:0"
HAND_HOWTO = (
    "Use MediaPipe's hand landmark (full) model as ONNX: the shared test assets ship it as "
    "models/hand_landmark_full.onnx (set MCANIM_ASSETS); set pose.hand_model='' to run "
    "without hands."
)


@dataclass
class HandCrop:
    """One hand to look at: the person's row, the side and the rotated crop."""

    person: int
    side: int
    crop: Crop
    scale: float
    """The hand scale ``L`` (frame pixels) of the crop placement."""


def hand_crops(people: np.ndarray, frame: int, min_score: float, min_size: float) -> list[HandCrop]:
    """(N, 133, 3) people of one frame -> the hand crops that pass the wrist and size gate."""
    out = []
    for n, person in enumerate(people):
        for side, (elbow, wrist, shoulder, hip, _) in SIDES.items():
            if person[wrist, 2] < min_score or person[elbow, 2] < min_score:
                continue
            forearm = person[wrist, :2].astype(np.float64) - person[elbow, :2]  # (2,)
            length = float(np.hypot(*forearm))
            if length < 1e-3:
                continue
            scale = length
            if person[shoulder, 2] >= min_score and person[hip, 2] >= min_score:
                torso = float(np.hypot(*(person[shoulder, :2] - person[hip, :2])))
                scale = max(scale, HAND_TORSO * torso)
            if HAND_LENGTH * scale < min_size:
                continue
            up = forearm / length  # crop "up" (fingers) in the frame
            axes = np.array([[-up[1], up[0]], [-up[0], -up[1]]])  # rows: crop x, crop y
            centre = person[wrist, :2] + HAND_SHIFT * scale * up
            size = np.array([HAND_CROP * scale, HAND_CROP * scale])
            out.append(HandCrop(n, side, Crop(frame, centre, size, axes), scale))
    return out


def hand_input(frame_rgb: np.ndarray, crop: Crop, input_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w, 3) float32 RGB in [0, 1], the rotated crop."""
    return crop_patch(frame_rgb, crop, input_hw).astype(np.float32) / 255.0


def decode_hands(
    landmarks: np.ndarray, presence: np.ndarray, crops: list[Crop], input_hw: tuple[int, int]
) -> np.ndarray:
    """(M, 63) crop pixels + (M,) presence -> (M, 21, 3) (x, y, presence) in frame pixels."""
    xy = landmarks.reshape(-1, HAND_POINTS, 3)[..., :2]  # (M, 21, 2) crop pixels
    frame_xy = crop_to_frame(xy, crops, input_hw)  # (M, 21, 2)
    score = np.broadcast_to(presence.reshape(-1, 1, 1), (len(crops), HAND_POINTS, 1))
    return np.concatenate([frame_xy, score], -1).astype(np.float32)


def landmark_crop(hand: np.ndarray, frame: int) -> Crop:
    """The crop MediaPipe's tracking places from a hand's (21, 3) landmarks: turned so that
    wrist -> middle-finger base points up, centred on the landmarks' box in that rotated frame
    moved ``LANDMARK_SHIFT`` box sides towards the fingers, side ``LANDMARK_CROP`` x the box's
    longer side."""
    xy = hand[:, :2].astype(np.float64)  # (21, 2)
    up = xy[9] - xy[0]
    up = up / max(float(np.hypot(*up)), 1e-6)
    axes = np.array([[-up[1], up[0]], [-up[0], -up[1]]])  # rows: crop x, crop y
    local = xy @ axes.T  # (21, 2) in the rotated frame
    low, high = local.min(0), local.max(0)
    side = float((high - low).max()) * LANDMARK_CROP
    centre = (low + high) / 2 + np.array([0.0, -LANDMARK_SHIFT * float((high - low).max())])
    return Crop(frame, centre @ axes, np.array([side, side]), axes)


class HandModel:
    """The hand landmark model and the gate: fills points 91..132 of a frame's people."""

    def __init__(
        self, model: OnnxModel, min_score: float, min_size: float, score: float, passes: int = 2
    ):
        self.model, self.passes = model, passes
        self.min_score, self.min_size, self.score = min_score, min_size, score
        names = model.outputs
        self._landmarks = names.index("Identity:0") if "Identity:0" in names else 1
        self._presence = names.index(PRESENCE) if PRESENCE in names else 3

    def run(self, crops: list[Crop], frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hands (M, 21, 3) in frame pixels and presence (M,) of the model on every crop."""
        hw = self.model.hw
        batch = np.stack([hand_input(frames[c.frame], c, hw) for c in crops])  # (M, 224, 224, 3)
        outs = self.model.run(batch, 1)
        presence = outs[self._presence].reshape(-1)
        return decode_hands(outs[self._landmarks], presence, crops, hw), presence

    def add_hands(self, frames: np.ndarray, people: list[np.ndarray]) -> list[np.ndarray]:
        """Per-frame (N, 133, 3) people, their hand points filled where the gate passes."""
        todo = [
            h for t, p in enumerate(people) for h in hand_crops(p, t, self.min_score, self.min_size)
        ]
        if not todo:
            return people
        hands, presence = self.run([h.crop for h in todo], frames)  # (M, 21, 3), (M,)
        for _ in range(self.passes - 1):  # again, on crops placed by the hands found
            crops = [landmark_crop(pts, h.crop.frame) for pts, h in zip(hands, todo, strict=True)]
            for h, crop in zip(todo, crops, strict=True):
                h.crop = crop
            hands, presence = self.run(crops, frames)
        for h, points, p in zip(todo, hands, presence, strict=True):
            person = people[h.crop.frame][h.person]
            wrist = person[SIDES[h.side][1], :2]
            if p < self.score or np.hypot(*(points[0, :2] - wrist)) > WRIST_AGREE * h.scale:
                continue  # the model does not see this arm's hand there: absent, score 0
            first = SIDES[h.side][4]
            person[first : first + HAND_POINTS] = points
        return people
