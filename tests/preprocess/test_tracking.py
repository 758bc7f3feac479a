"""Cross-frame tracking (preprocess.pose.tracking.track): synthetic scenes + real vtest frames."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose.tracking import box_iou, keypoint_box, track
from tests.media import read_frames

# A standing person ~40 px wide and ~100 px tall around (0, 0): COCO body order offsets.
BODY_TEMPLATE = np.array(
    [
        [0, -45], [-3, -48], [3, -48], [-7, -46], [7, -46],  # nose, eyes, ears
        [-12, -32], [12, -32], [-18, -12], [18, -12], [-20, 6], [20, 6],  # arms
        [-8, 5], [8, 5], [-9, 28], [9, 28], [-9, 50], [9, 50],  # legs
    ],
    np.float32,
)  # fmt: skip

CFG = PoseConfig(track_max_gap=8, track_min_frames=4, track_min_iou=0.2)


def person(cx: float, cy: float, scale: float = 1.0, score: float = 0.9) -> np.ndarray:
    """(133, 3) whole-body keypoints of a synthetic person centred at (cx, cy)."""
    kps = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    kps[:17, :2] = BODY_TEMPLATE * scale + [cx, cy]
    kps[:17, 2] = score
    return kps


def frames_of(*people_per_frame: list[np.ndarray]) -> list[np.ndarray]:
    return [
        np.stack(p) if p else np.zeros((0, NUM_KEYPOINTS, 3), np.float32) for p in people_per_frame
    ]


def centre_x(tracks: np.ndarray, p: int) -> np.ndarray:
    """Mean x of the confident body points of track p per frame (nan where absent)."""
    kps = tracks[:, p, :17]
    present = kps[..., 2].max(-1) > 0
    xs = np.where(present, kps[..., 0].sum(-1) / np.maximum((kps[..., 2] > 0).sum(-1), 1), np.nan)
    return xs


def walkers(n: int = 30) -> list[np.ndarray]:
    """Person A walks right, B walks left at the same height; they fully overlap mid-clip."""
    return frames_of(
        *[[person(100 + 10 * t, 200), person(390 - 10 * t, 205, scale=1.1)] for t in range(n)]
    )


def test_people_walking_past_each_other_keep_their_index() -> None:
    out = track(walkers(), CFG)
    assert out.shape == (30, 2, NUM_KEYPOINTS, 3)
    a, b = centre_x(out, 0), centre_x(out, 1)
    assert np.all(np.diff(a) > 0), a  # track 0 = A (leftmost at frame 0) keeps walking right
    assert np.all(np.diff(b) < 0), b
    np.testing.assert_allclose(out[:, 0, 0, 0], 100 + 10 * np.arange(30))


def test_identical_people_crossing_exactly() -> None:
    """Same size, same height: at the crossing frame the two detections coincide."""
    dets = frames_of(*[[person(100 + 10 * t, 200), person(380 - 10 * t, 200)] for t in range(29)])
    out = track(dets, CFG)
    assert out.shape[1] == 2
    assert np.all(np.diff(centre_x(out, 0)) > 0) and np.all(np.diff(centre_x(out, 1)) < 0)


def test_short_disappearance_keeps_the_track_long_one_starts_a_new_one() -> None:
    def scene(gap: range) -> list[np.ndarray]:
        return frames_of(*[[] if t in gap else [person(100 + 5 * t, 200)] for t in range(40)])

    out = track(scene(range(10, 15)), CFG)  # 5 frames unmatched <= track_max_gap 8
    assert out.shape[1] == 1
    assert np.all(out[10:15] == 0) and np.all(out[[9, 15], 0, :17, 2] > 0)

    out = track(scene(range(10, 22)), CFG)  # 12 frames > 8: a new track
    assert out.shape[1] == 2
    assert np.all(out[:10, 0, :17, 2] > 0) and np.all(out[10:, 0] == 0)
    assert np.all(out[:22, 1] == 0) and np.all(out[22:, 1, :17, 2] > 0)


def test_reappearing_person_is_matched_at_its_predicted_position() -> None:
    """Moving 12 px/frame, absent for 6 frames: only the velocity prediction overlaps."""
    dets = frames_of(*[[] if 10 <= t < 16 else [person(60 + 12 * t, 200)] for t in range(30)])
    out = track(dets, CFG)
    assert out.shape[1] == 1


def test_spurious_one_frame_detections_are_dropped() -> None:
    people = [[person(100 + 3 * t, 200)] for t in range(20)]
    people[5].append(person(400, 100))
    people[11].append(person(300, 300, scale=0.5))
    out = track(frames_of(*people), CFG)
    assert out.shape == (20, 1, NUM_KEYPOINTS, 3)
    np.testing.assert_array_equal(out[:, 0], np.stack([p[0] for p in people]))


def test_empty_input_and_empty_frames() -> None:
    assert track([], CFG).shape == (0, 0, NUM_KEYPOINTS, 3)
    assert track(frames_of(*[[] for _ in range(5)]), CFG).shape == (5, 0, NUM_KEYPOINTS, 3)
    absent = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)  # a "person" without any point
    assert track([absent] * 6, CFG).shape == (6, 0, NUM_KEYPOINTS, 3)


def test_short_clips_keep_tracks_seen_in_every_frame() -> None:
    out = track(frames_of([person(100, 100)], [person(102, 100)]), CFG)  # T=2 < min_frames
    assert out.shape[1] == 1


def test_tracks_are_ordered_by_first_appearance_then_x() -> None:
    late_left = [[person(400, 200)] + ([person(50, 200)] if t >= 3 else []) for t in range(10)]
    out = track(frames_of(*late_left), CFG)
    assert out.shape[1] == 2
    assert np.all(out[:, 0, 0, 0] == 400) and np.all(out[:3, 1] == 0)
    same_frame = frames_of(*[[person(300, 200), person(50, 200)] for _ in range(6)])
    assert np.all(track(same_frame, CFG)[:, 0, 0, 0] == 50)


def three_people(n: int = 25) -> list[list[np.ndarray]]:
    """Three walkers with crossings and a gap: A right, B left, C diagonally, C absent 8-11."""
    scene = []
    for t in range(n):
        people = [person(80 + 9 * t, 200), person(330 - 8 * t, 210, scale=1.2)]
        if not 8 <= t < 12:
            people.append(person(150 + 4 * t, 120 + 6 * t, scale=0.8))
        scene.append(people)
    return scene


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_shuffled_detection_order_gives_identical_tracks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scene = three_people()
    reference = track(frames_of(*scene), CFG)
    shuffled = frames_of(*[[p[i] for i in rng.permutation(len(p))] for p in scene])
    np.testing.assert_array_equal(track(shuffled, CFG), reference)
    assert reference.shape[1] == 3
    assert np.all(np.diff(centre_x(reference, 0)) > 0)  # A (leftmost at frame 0) stays A
    assert np.all(np.diff(centre_x(reference, 2)) < 0)  # B (rightmost) stays B


def test_box_helpers() -> None:
    kps = person(100, 200)
    kps[0, 2] = 0.1  # below min_score: not part of the box
    box = keypoint_box(kps, 0.3)
    assert box is not None
    np.testing.assert_allclose(box, [80, 152, 120, 250])
    assert keypoint_box(np.zeros((NUM_KEYPOINTS, 3), np.float32), 0.3) is None
    a = np.array([0, 0, 10, 10], np.float32)
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, a + np.array([5, 0, 5, 0], np.float32)) == pytest.approx(50 / 150)
    assert box_iou(a, a + 20) == 0.0


# ---- real data: MoveNet detections over 30 vtest frames ------------------------------------


def box_track(tracks: np.ndarray, p: int, min_score: float) -> dict[int, np.ndarray]:
    return {
        t: box
        for t in range(tracks.shape[0])
        if (box := keypoint_box(tracks[t, p], min_score)) is not None
    }


def test_movenet_tracks_on_vtest_are_continuous(vtest: Path, movenet_onnx: Path) -> None:
    from preprocess.pose import create_pose_backend

    cfg = PoseConfig(model=str(movenet_onnx), input_size=512)
    dets = create_pose_backend(cfg).detect_frames(read_frames(vtest, 30))
    tracks = track(dets, cfg)
    seen = (tracks[..., 2].max(-1) > 0).sum(0)  # frames per track
    long_tracks = np.flatnonzero(seen >= 15)
    assert len(long_tracks) >= 2, seen
    assert tracks.shape[1] <= max(len(d) for d in dets) + 4, seen  # few fragments
    for p in map(int, long_tracks):
        boxes = box_track(tracks, p, cfg.min_score)
        frames = sorted(boxes)
        for t0, t1 in itertools.pairwise(frames):
            b0, b1 = boxes[t0], boxes[t1]
            jump = np.hypot(*((b1[:2] + b1[2:]) / 2 - (b0[:2] + b0[2:]) / 2))
            height = max(b0[3] - b0[1], b1[3] - b1[1])
            # pedestrians move a few px per frame: a jump of half a body height is a swap
            assert jump < 0.5 * height * (t1 - t0), (p, t0, t1, jump, height)


def test_a_person_missed_for_long_resumes_their_track_where_they_stood() -> None:
    """20 frames without detections (> track_max_gap): the same place resumes the track."""
    gap = CFG.track_max_gap + 12
    seq = frames_of(*[[person(200, 200)]] * 10, *[[]] * gap, *[[person(203, 201)]] * 10)
    out = track(seq, CFG)
    assert out.shape[1] == 1
    present = out[:, 0, :17, 2].max(-1) > 0
    assert present.sum() == 20 and not present[10 : 10 + gap].any()


def test_someone_appearing_elsewhere_after_a_gap_is_a_new_track() -> None:
    gap = CFG.track_max_gap + 12
    seq = frames_of(*[[person(100, 200)]] * 10, *[[]] * gap, *[[person(300, 200)]] * 10)
    assert track(seq, CFG).shape[1] == 2


def test_resuming_after_a_gap_can_be_disabled() -> None:
    gap = CFG.track_max_gap + 12
    seq = frames_of(*[[person(200, 200)]] * 10, *[[]] * gap, *[[person(200, 200)]] * 10)
    no_reid = PoseConfig(track_max_gap=8, track_min_frames=4, track_min_iou=0.2, track_reid_iou=0)
    assert track(seq, no_reid).shape[1] == 2
    assert track(seq, CFG).shape[1] == 1
