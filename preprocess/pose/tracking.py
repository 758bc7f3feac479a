"""Cross-frame tracking: per-frame detections -> tracks with a stable person index.

Pure array code (no model, no I/O). Algorithm, frame by frame:

1. A detection's box is the bounding box of its keypoints with score >= ``pose.min_score``
   (all points with score > 0 if fewer than two pass); detections without any are ignored.
2. Each live track predicts its box and keypoints at the current frame from its last
   observation plus a smoothed constant velocity (box-centre motion per frame), which keeps
   people apart when they walk past each other.
3. Cost of (track, detection) = 0.5 * (1 - IoU(predicted box, box)) + 0.5 * min(1, d), with
   d the mean distance of keypoints confident in both, divided by sqrt(area of the predicted
   box) (1 when they share no keypoint). Pairs with IoU < ``pose.track_min_iou`` are forbidden.
4. Hungarian assignment (scipy ``linear_sum_assignment``). A track can be continued while it
   has gone at most ``pose.track_max_gap`` frames unmatched; after that it is dormant, and a
   detection left over whose box overlaps the dormant track's last box with IoU >=
   ``pose.track_reid_iou`` resumes it (a person who was missed for a while where they stood).
   The remaining detections start tracks.
5. Tracks observed in fewer than ``min(pose.track_min_frames, T)`` frames are dropped.
6. Tracks are ordered by first appearance (first frame, then box centre x, then y), so the
   result does not depend on the order of detections within a frame. Absent frames are zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS

FORBIDDEN = 1e6
VELOCITY_SMOOTHING = 0.5
"""Weight of the newest displacement in the track's velocity estimate."""


@dataclass
class _Track:
    first_frame: int
    last_frame: int
    keypoints: np.ndarray  # (133, 3) last observation
    box: np.ndarray  # (4,) x0, y0, x1, y1 of the last observation
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    observations: dict[int, np.ndarray] = field(default_factory=dict)
    moved: bool = False
    first_box: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.first_box = self.box

    def predict(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Box (4,) and keypoints (133, 3) expected at ``frame``."""
        shift = self.velocity * (frame - self.last_frame)
        keypoints = self.keypoints.copy()
        keypoints[:, :2] += shift
        return self.box + np.tile(shift, 2), keypoints

    def update(self, frame: int, keypoints: np.ndarray, box: np.ndarray) -> None:
        step = (_centre(box) - _centre(self.box)) / (frame - self.last_frame)
        a = VELOCITY_SMOOTHING if self.moved else 1.0
        self.velocity = (a * step + (1 - a) * self.velocity).astype(np.float32)
        self.moved = True
        self.last_frame, self.keypoints, self.box = frame, keypoints, box
        self.observations[frame] = keypoints


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)


def keypoint_box(keypoints: np.ndarray, min_score: float) -> np.ndarray | None:
    """(133, 3) -> box (x0, y0, x1, y1) of its confident points, or None without any."""
    points = keypoints[keypoints[:, 2] >= max(min_score, 1e-6), :2]
    if len(points) < 2:
        points = keypoints[keypoints[:, 2] > 0, :2]
    if len(points) == 0:
        return None
    return np.concatenate([points.min(0), points.max(0)]).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x0, y0, x1, y1) boxes; degenerate boxes get a 1-pixel extent."""
    a = np.concatenate([a[:2], np.maximum(a[2:], a[:2] + 1)])
    b = np.concatenate([b[:2], np.maximum(b[2:], b[:2] + 1)])
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def keypoint_distance(a: np.ndarray, b: np.ndarray, box: np.ndarray, min_score: float) -> float:
    """Mean distance of points confident in both (133, 3) arrays / sqrt(box area); 1 if none."""
    both = (a[:, 2] >= max(min_score, 1e-6)) & (b[:, 2] >= max(min_score, 1e-6))
    if not both.any():
        return 1.0
    scale = np.sqrt(max(1.0, float((box[2] - box[0]) * (box[3] - box[1]))))
    return float(np.linalg.norm(a[both, :2] - b[both, :2], axis=1).mean() / scale)


def _cost_matrix(
    tracks: list[_Track], dets: list[tuple[np.ndarray, np.ndarray]], frame: int, cfg: PoseConfig
) -> np.ndarray:
    cost = np.full((len(tracks), len(dets)), FORBIDDEN)
    for i, tr in enumerate(tracks):
        box, kps = tr.predict(frame)
        for j, (det_kps, det_box) in enumerate(dets):
            iou = box_iou(box, det_box)
            if iou >= cfg.track_min_iou:
                dist = keypoint_distance(kps, det_kps, box, cfg.min_score)
                cost[i, j] = 0.5 * (1.0 - iou) + 0.5 * min(1.0, dist)
    return cost


def _frame_detections(people: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(N, 133, 3) -> [(keypoints, box)] of people with at least one scored point."""
    out = []
    for kps in np.asarray(people, np.float32).reshape(-1, NUM_KEYPOINTS, 3):
        box = keypoint_box(kps, min_score)
        if box is not None:
            out.append((kps, box))
    return out


def _step(tracks: list[_Track], people: np.ndarray, frame: int, cfg: PoseConfig) -> None:
    """Match one frame's detections to the live tracks; start tracks for the rest."""
    dets = _frame_detections(people, cfg.min_score)
    live = [tr for tr in tracks if frame - tr.last_frame - 1 <= cfg.track_max_gap]
    matched: set[int] = set()
    if live and dets:
        cost = _cost_matrix(live, dets, frame, cfg)
        for i, j in zip(*linear_sum_assignment(cost), strict=True):
            if cost[i, j] < FORBIDDEN:
                live[i].update(frame, *dets[j])
                matched.add(int(j))
    unmatched = [j for j in range(len(dets)) if j not in matched]
    dormant = [tr for tr in tracks if frame - tr.last_frame - 1 > cfg.track_max_gap]
    unmatched = _resume(dormant, dets, unmatched, frame, cfg)
    for j in unmatched:
        kps, box = dets[j]
        tracks.append(_Track(frame, frame, kps, box, observations={frame: kps}))


def _resume(
    dormant: list[_Track],
    dets: list[tuple[np.ndarray, np.ndarray]],
    unmatched: list[int],
    frame: int,
    cfg: PoseConfig,
) -> list[int]:
    """Give dormant tracks back the detections that reappear where they were last seen (box
    IoU >= ``pose.track_reid_iou``, no motion prediction); returns the detections left."""
    if cfg.track_reid_iou <= 0 or not dormant or not unmatched:
        return unmatched
    cost = np.full((len(dormant), len(unmatched)), FORBIDDEN)
    for i, tr in enumerate(dormant):
        for k, j in enumerate(unmatched):
            iou = box_iou(tr.box, dets[j][1])
            if iou >= cfg.track_reid_iou:
                cost[i, k] = 1.0 - iou
    taken: set[int] = set()
    for i, k in zip(*linear_sum_assignment(cost), strict=True):
        if cost[i, k] < FORBIDDEN:
            dormant[i].moved = False  # the old velocity says nothing after a long gap
            dormant[i].update(frame, *dets[unmatched[k]])
            taken.add(unmatched[k])
    return [j for j in unmatched if j not in taken]


def _appearance_order(tr: _Track) -> tuple[int, float, float]:
    cx, cy = _centre(tr.first_box)
    return tr.first_frame, float(cx), float(cy)


def track(detections: list[np.ndarray], cfg: PoseConfig) -> np.ndarray:
    """Per-frame detections [(N_i, 133, 3)] -> tracked keypoints (T, P, 133, 3) float32."""
    n_frames = len(detections)
    tracks: list[_Track] = []
    for frame, people in enumerate(detections):
        _step(tracks, people, frame, cfg)
    min_frames = min(cfg.track_min_frames, n_frames)
    kept = [tr for tr in tracks if len(tr.observations) >= min_frames]
    kept.sort(key=_appearance_order)
    out = np.zeros((n_frames, len(kept), NUM_KEYPOINTS, 3), np.float32)  # (T, P, 133, 3)
    for p, tr in enumerate(kept):
        for frame, kps in tr.observations.items():
            out[frame, p] = kps
    return out
