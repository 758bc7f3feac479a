"""Inference's guider inputs (model/inputs.py): matching driving tracks to reference
characters, the order held for the video, the maps and their float conditions. The canvas
itself (crop, ranks, reference nearness) is tested in tests/preprocess/geometry/test_canvas.py."""

from __future__ import annotations

import numpy as np

from model.guiders import Conditions
from model.inputs import guider_arrays, match_characters, track_priority
from preprocess.geometry import GeometryConfig, order_value
from preprocess.geometry.canvas import character_masks

# COCO body keypoints of a standing person, relative (x, y) with y = 0 at the head, 1 at the feet.
STANDING = np.array(
    [(0, 0.05), (-0.04, 0.03), (0.04, 0.03), (-0.08, 0.05), (0.08, 0.05),
     (-0.2, 0.2), (0.2, 0.2), (-0.28, 0.4), (0.28, 0.4), (-0.3, 0.55), (0.3, 0.55),
     (-0.12, 0.55), (0.12, 0.55), (-0.12, 0.78), (0.12, 0.78), (-0.12, 1.0), (0.12, 1.0)]
)  # fmt: skip
ARMS_UP = STANDING.copy()
ARMS_UP[[7, 8, 9, 10], 1] = [0.05, 0.05, -0.1, -0.1]


def person(cx: float, feet_y: float, height: float, shape: np.ndarray = STANDING) -> np.ndarray:
    """(133, 3) keypoints: body points of ``shape`` scaled to ``height`` px, feet at feet_y."""
    kps = np.zeros((133, 3), np.float32)
    kps[:17, 0] = cx + shape[:, 0] * height
    kps[:17, 1] = feet_y - height + shape[:, 1] * height
    kps[:17, 2] = 0.9
    return kps


GEO = GeometryConfig()


def test_characters_are_matched_by_position_and_pose() -> None:
    size = (128, 96)
    reference = np.stack([person(25, 120, 80), person(70, 110, 70, ARMS_UP)])  # left, right
    # Driving: track 0 is the right one (arms up), track 1 the left one, track 2 a newcomer
    # standing where nobody is in the reference; it appears only in frame 1.
    driving = np.zeros((2, 3, 133, 3), np.float32)
    driving[:, 0] = person(72, 112, 70, ARMS_UP)
    driving[:, 1] = person(22, 118, 80)
    driving[1, 2] = person(48, 126, 60)
    match = match_characters(reference, driving, size, GEO)
    assert match.tolist() == [1, 0, -1]
    # Reference order: the left character's feet are lower, so it is in front (rank 0).
    nearness = np.array([120.0, 110.0])
    priority = track_priority(match, nearness, driving, GEO)
    assert priority.tolist() == [1, 0, 2]


def test_guider_maps_use_the_reference_order_in_every_frame() -> None:
    size = (128, 96)
    a, b = person(40, 118, 90), person(56, 124, 90)  # overlapping; b's feet are lower
    reference = np.stack([a, b])
    driving = np.stack([reference, reference])  # (T=2, P=2, 133, 3)
    # The reference ranked a in front (say from a depth map), although b stands lower.
    arrays = guider_arrays(driving, reference, np.array([0, 1]), size, GEO)
    assert arrays.pose.shape == (2, *size, 3) and arrays.pose.dtype == np.uint8
    assert arrays.reference_pose.shape == (*size, 3) and arrays.reference_pose.any()
    front, back = order_value(0, GEO.order_levels), order_value(1, GEO.order_levels)
    assert set(np.unique(arrays.order).tolist()) == {0, front, back}
    masks = character_masks(reference, size, GEO)  # (2, H, W)
    both, only_a, only_b = masks[0] & masks[1], masks[0] & ~masks[1], masks[1] & ~masks[0]
    assert both.any() and only_a.any() and only_b.any()
    for frame in arrays.order:  # held for every frame; overlaps belong to the front character
        assert (frame[both] == front).all() and (frame[only_a] == front).all()
        assert (frame[only_b] == back).all()
    # Flow guider input: zero background flow, 1.0 in the characters' regions.
    assert set(np.unique(arrays.flow).tolist()) == {0.0, 1.0}
    assert np.array_equal(arrays.flow[0, ..., 0] == 1.0, masks.any(0))
    swapped = guider_arrays(driving, reference, np.array([1, 0]), size, GEO)
    assert (swapped.order[0][both] == front).all() and (swapped.order[0][only_a] == back).all()


def test_conditions_from_arrays_layout_and_range() -> None:
    size = (64, 48)
    kps = np.stack([person(24, 60, 50)])
    arrays = guider_arrays(np.stack([kps] * 3), kps, np.array([0]), size, GEO)
    cond = Conditions.from_arrays(arrays)
    assert cond.pose.shape == (1, 3, 3, 64, 48)
    assert cond.flow.shape == (1, 3, 2, 64, 48)
    assert cond.order.shape == (1, 3, 1, 64, 48)
    assert cond.reference_pose.shape == (1, 1, 3, 64, 48)
    assert float(cond.pose.max()) <= 1.0 and float(cond.order.max()) == 1.0
