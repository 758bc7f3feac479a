"""Per-frame detection cleanup (preprocess.pose.cleanup): torso check and keypoint OKS-NMS."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose.cleanup import (
    COCO_BODY_SIGMAS,
    clean_detections,
    has_torso,
    keypoint_similarity,
    suppress_duplicates,
)
from tests.preprocess.test_tracking import person

CFG = PoseConfig(min_score=0.3, nms_oks=0.5, require_torso=True)


def stack(*people: np.ndarray) -> np.ndarray:
    return np.stack(people) if people else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)


def test_similarity_of_identical_people_is_one_and_of_distant_people_zero() -> None:
    a = person(100, 200)
    assert keypoint_similarity(a, a, area=40 * 100, min_score=0.3) == 1.0
    assert keypoint_similarity(a, person(300, 200), area=40 * 100, min_score=0.3) < 1e-6


def test_similarity_hand_computed_for_a_uniform_shift() -> None:
    """Every point shifted by d: OKS = mean_k exp(-d² / (2 area (2 sigma_k)²))."""
    a, b = person(100, 200), person(103, 204)  # d² = 25
    area = 4000.0
    expected = np.exp(-25.0 / (2 * area * (2 * COCO_BODY_SIGMAS.astype(np.float64)) ** 2)).mean()
    assert abs(keypoint_similarity(a, b, area, 0.3) - expected) < 1e-6


def test_similarity_needs_two_shared_confident_points() -> None:
    a, b = person(100, 200), person(100, 200)
    b[1:17, 2] = 0.1  # only the nose is confident in both
    assert keypoint_similarity(a, b, 4000.0, 0.3) == 0.0


def test_exact_duplicate_is_dropped_and_the_stronger_copy_kept() -> None:
    weak, strong = person(100, 200, score=0.5), person(100, 200, score=0.9)
    other = person(300, 200)
    out = suppress_duplicates(stack(weak, other, strong), 0.3, 0.5)
    assert out.shape[0] == 2
    np.testing.assert_array_equal(out[0], other)  # input order of the kept ones
    np.testing.assert_array_equal(out[1], strong)


def test_overlapping_distinct_people_are_both_kept() -> None:
    """Two people side by side (half a body width apart) are not duplicates."""
    out = suppress_duplicates(stack(person(100, 200), person(125, 205)), 0.3, 0.5)
    assert out.shape[0] == 2


def test_threshold_zero_disables_suppression() -> None:
    a = person(100, 200)
    assert suppress_duplicates(stack(a, a), 0.3, 0.0).shape[0] == 2


def test_limb_fragment_without_torso_is_dropped() -> None:
    """The MoveNet failure seen on the dance video: legs reported as elbows and wrists."""
    full = person(100, 200)
    fragment = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    fragment[[7, 8, 9, 10], :2] = full[[13, 14, 15, 16], :2]
    fragment[[7, 8, 9, 10], 2] = 0.5
    assert has_torso(stack(full, fragment), 0.3).tolist() == [True, False]
    out = clean_detections(stack(full, fragment), CFG)
    assert out.shape[0] == 1
    kept_all = clean_detections(stack(full, fragment), PoseConfig(require_torso=False))
    assert kept_all.shape[0] == 2


def test_person_cut_by_the_frame_edge_keeps_its_hips() -> None:
    legs = person(100, 200)
    legs[:11, 2] = 0.0  # only hips, knees and ankles visible
    assert clean_detections(stack(legs), CFG).shape[0] == 1


def test_empty_frame_stays_empty() -> None:
    assert clean_detections(stack(), CFG).shape == (0, NUM_KEYPOINTS, 3)


@settings(max_examples=50, deadline=None)
@given(
    centres=st.lists(
        st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0.35, 1.0)),
        min_size=0,
        max_size=6,
    ),
    copies=st.integers(0, 3),
)
def test_cleanup_returns_a_subset_and_is_idempotent(
    centres: list[tuple[float, float, float]], copies: int
) -> None:
    people = [person(x, y, score=s) for x, y, s in centres]
    people += people[:copies]  # exact duplicates
    detections = stack(*people)
    once = clean_detections(detections, CFG)
    assert once.shape[0] <= detections.shape[0]
    assert once.shape[0] >= min(1, detections.shape[0])  # something survives a non-empty frame
    for p in once:  # every kept detection is one of the inputs
        assert any(np.array_equal(p, q) for q in detections)
    np.testing.assert_array_equal(clean_detections(once, CFG), once)
    for i in range(len(once)):  # no two kept detections are duplicates of each other
        for j in range(i + 1, len(once)):
            assert not np.array_equal(once[i], once[j])
