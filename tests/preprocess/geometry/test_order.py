"""Nearness, ranks and depth-order maps (preprocess.geometry.order): hand-computed cases and
the set relations of docs/design.md §3 on random multi-person frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess import geometry as G
from tests.preprocess.geometry.helpers import (
    A_RECT,
    B_RECT,
    THR,
    kp,
    masks_of,
    rect_masks,
    scenes,
)

# --- nearness and ranks: hand-computed -----------------------------------------------------


def test_nearness_from_depth_uses_the_exclusive_region_with_fallback() -> None:
    masks = rect_masks(6, 9, A_RECT, B_RECT, (2, 3, 3, 5), (0, 5, 0, 8))  # C = A∩B; D absent
    depth = np.full((6, 9), 0.2, np.float32)
    depth[2:6, 3:9] = 0.4  # B
    depth[2:4, 3:6] = 5.0  # A∩B: would make A (18*0.2 + 6*5)/24 = 1.4 if it counted
    present = np.array([True, True, True, False])
    near = G.nearness_from_depth(depth, masks, present)
    # C's exclusive region is empty (A and B cover it): its full-region mean, 5.0
    assert near[:3] == pytest.approx([0.2, 0.4, 5.0]) and math.isnan(near[3])
    assert G.ranks_from_nearness(near, present).tolist() == [2, 1, 0, -1]


def test_nearness_from_feet_is_the_lowest_confident_body_or_foot_point() -> None:
    a = kp({0: (10, 5, 0.9), 11: (10, 50, 0.9), 15: (10, 80, 0.9), 16: (12, 200, 0.1)})
    a[19] = (10, 85, 0.9)  # left heel: counts
    a[30] = (10, 300, 0.9)  # face: does not count
    a[95] = (10, 400, 0.9)  # left hand: does not count
    b = kp({5: (30, 40, 0.9), 6: (40, 40, 0.9), 11: (30, 60, 0.9)})
    frame = np.stack([a, b, kp({})])  # (3, 133, 3)
    present = G.present_characters(frame, THR, 3)
    near = G.nearness_from_feet(frame, present, THR)
    assert near[:2].tolist() == [85.0, 60.0] and math.isnan(near[2])
    assert G.ranks_from_nearness(near, present).tolist() == [0, 1, -1]


@pytest.mark.parametrize(
    ("nearness", "present", "expected"),
    [
        ([0.2, 0.9, 0.5], [1, 1, 1], [2, 0, 1]),
        ([0.5, 0.5, 0.1], [1, 1, 1], [0, 1, 2]),  # tie: lower track index is nearer
        ([0.9, 0.1, 0.3], [0, 1, 1], [-1, 1, 0]),  # absent takes no rank
        ([math.nan, 0.1, 0.3], [1, 1, 1], [2, 1, 0]),  # present without a region: last
        ([], [], []),
    ],
)
def test_ranks_from_nearness(nearness, present, expected) -> None:
    ranks = G.ranks_from_nearness(np.array(nearness, float), np.array(present, bool))
    assert ranks.dtype == np.int8 and ranks.tolist() == expected


# --- depth order: hand-computed -------------------------------------------------------------


def test_order_levels_for_k4_and_rounding() -> None:
    assert [G.order_value(r, 4) for r in range(7)] == [255, 191, 128, 64, 64, 64, 64]
    assert [G.order_level(r, 4) for r in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.25, 0.25]
    assert G.order_value(0, 1) == 255 and G.order_value(5, 1) == 255
    assert G.order_value(14, 20) == 77  # 255 * 6 / 20 = 76.5: half up
    assert G.order_value(-1, 4) == 0 and G.order_level(-1, 4) == 0.0
    with pytest.raises(ValueError):
        G.order_level(0, 0)


def test_front_character_owns_the_overlap() -> None:
    masks = rect_masks(6, 9, A_RECT, B_RECT)
    order = G.depth_order_map(masks, np.array([1, 0], np.int8), 4)  # B in front
    assert order.dtype == np.uint8 and order.shape == (6, 9)
    assert (order == 255).sum() == 24 and (order == 191).sum() == 18 and (order == 0).sum() == 12
    assert (order[2:4, 3:6] == 255).all()
    order = G.depth_order_map(masks, np.array([0, 1], np.int8), 4)  # A in front
    assert (order[2:4, 3:6] == 255).all() and (order == 191).sum() == 18
    assert (order[4:6, 3:9] == 191).all()


def test_absent_is_not_painted_and_far_ranks_share_the_last_level() -> None:
    masks = rect_masks(6, 9, A_RECT, B_RECT)
    order = G.depth_order_map(masks, np.array([-1, 0], np.int8), 4)
    assert (order == 255).sum() == 24 and (order == 0).sum() == 30
    order = G.depth_order_map(masks, np.array([5, 4], np.int8), 4)
    assert (order == 64).sum() == 42
    assert G.depth_order_map(masks[:0], np.zeros(0, np.int8), 4).sum() == 0


# --- properties --------------------------------------------------------------------------


def paint_reference(masks: np.ndarray, ranks: np.ndarray, levels: int) -> np.ndarray:
    """docs/design.md §3 literally: paint full regions from the farthest rank to the nearest."""
    out = np.zeros(masks.shape[1:], np.uint8)
    for p in sorted(np.flatnonzero(ranks >= 0), key=lambda p: -int(ranks[p])):
        out[masks[p]] = G.order_value(int(ranks[p]), levels)
    return out


@settings(max_examples=100, deadline=None)
@given(scenes(max_people=6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_region_and_order_relations(scene, levels: int, seed: int) -> None:
    keypoints, frame_size, out_size, cfg = scene
    masks = masks_of(keypoints, frame_size, out_size, cfg)  # (P, h, w)
    present = G.present_characters(keypoints, cfg.keypoint_threshold, cfg.min_keypoints)
    union, count, excl = G.union_mask(masks), G.overlap_count(masks), G.exclusive_regions(masks)
    assert union.shape == out_size and (union >= masks).all()
    assert np.array_equal(union, count > 0)
    assert (excl <= masks).all() and (excl.sum(0) <= 1).all(), "exclusive regions are disjoint"
    assert np.array_equal(excl.any(0) | (count >= 2), union)

    depth = np.random.default_rng(seed).random(out_size).astype(np.float32)
    near = G.nearness_from_depth(depth, masks, present)
    assert np.isnan(near[~present]).all()
    ranks = G.ranks_from_nearness(near, present)
    assert sorted(ranks[present].tolist()) == list(range(int(present.sum())))
    assert (ranks[~present] == -1).all()
    order = G.depth_order_map(masks, ranks, levels)
    assert np.array_equal(order, paint_reference(masks, ranks, levels))
    assert np.array_equal(order > 0, union)  # absent characters have empty masks
    values = np.array([G.order_value(int(r), levels) for r in ranks], np.uint8)
    covering_max = (masks * values[:, None, None]).max(0, initial=0)
    assert np.array_equal(order, covering_max)

    rate = G.occlusion_rate(masks, present)
    if present.sum() < 2 or not union.any():
        assert rate is None
    else:
        assert rate is not None and 0.0 <= rate <= 1.0
        assert rate == pytest.approx((count >= 2).sum() / union.sum())
