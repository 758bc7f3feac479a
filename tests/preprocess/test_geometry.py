"""DESIGN §3 geometry (preprocess.geometry): hand-computed cases and hypothesis properties.

Hand cases mostly use frame_size == out_size (the identity mapping) and 1-pixel lines, so
every mask, area and statistic is counted by hand in the comments. The property tests compare
the fast path (crops, vectorised lines, one atlas dilation) with the documented procedure done
plainly on a whole canvas (a per-sample DDA, scipy disc dilations), check clip_geometry frame
by frame against the public per-frame functions, and check the set relations of DESIGN §3 on
random multi-person frames. No timings here: speed belongs to benchmarks/.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from preprocess import geometry as G
from preprocess import skeleton as S
from preprocess.config import GeometryConfig
from preprocess.pose.layout import NUM_KEYPOINTS

THR = 0.3
STATS_KEYS = {
    "bg_flow_mean",
    "bg_flow_p95",
    "occlusion_rate_mean",
    "occlusion_rate_max",
    "characters_max",
    "characters_mode",
    "multi_character_frac",
    "pose_score_mean",
}
# A standing person ~40 px wide, ~100 px tall around (0, 0): COCO body order, then feet.
BODY_TEMPLATE = np.array(
    [
        [0, -45], [-3, -48], [3, -48], [-7, -46], [7, -46],  # nose, eyes, ears
        [-12, -32], [12, -32], [-18, -12], [18, -12], [-20, 6], [20, 6],  # arms
        [-8, 5], [8, 5], [-9, 28], [9, 28], [-9, 50], [9, 50],  # legs
        [-12, 55], [-6, 55], [-9, 52], [12, 55], [6, 55], [9, 52],  # feet
    ],
    np.float64,
)  # fmt: skip


def kp(points: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """(133, 3) keypoints from {index: (x, y, score)}; every other point absent."""
    out = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    for i, xys in points.items():
        out[i] = xys
    return out


def person(cx: float, cy: float, scale: float = 1.0, score: float = 0.9) -> np.ndarray:
    """(133, 3) body + feet of a synthetic standing person centred at (cx, cy)."""
    out = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    out[:23, :2] = BODY_TEMPLATE * scale + [cx, cy]
    out[:23, 2] = score
    return out


def line_person(x_elbow: float, x_l: float, x_r: float, y: float, score: float) -> np.ndarray:
    """Three body points on one row: L elbow - L shoulder - R shoulder (limbs (5,7), (5,6))."""
    return kp({7: (x_elbow, y, score), 5: (x_l, y, score), 6: (x_r, y, score)})


def rect_masks(h: int, w: int, *rects: tuple[int, int, int, int]) -> np.ndarray:
    """(P, h, w) bool; each rect (y0, y1, x0, x1) inclusive."""
    out = np.zeros((len(rects), h, w), bool)
    for p, (y0, y1, x0, x1) in enumerate(rects):
        out[p, y0 : y1 + 1, x0 : x1 + 1] = True
    return out


def masks_of(keypoints: np.ndarray, frame_size, out_size, cfg: GeometryConfig) -> np.ndarray:
    return G.dilation_masks(
        keypoints,
        frame_size,
        out_size,
        keypoint_threshold=cfg.keypoint_threshold,
        limb_width=cfg.limb_width,
        dilation=cfg.dilation,
        min_keypoints=cfg.min_keypoints,
    )


def draw(
    keypoints: np.ndarray,
    frame_size: tuple[int, int],
    out_size: tuple[int, int] | None = None,
    *,
    limb_width: float = 0.0,
    dilation: float = 0.0,
) -> np.ndarray:
    """dilation_masks as the hand cases use it: threshold 0.3, 3 body points, by default
    1-pixel lines, no dilation and maps at the frame size."""
    return G.dilation_masks(
        keypoints,
        frame_size,
        out_size or frame_size,
        keypoint_threshold=THR,
        limb_width=limb_width,
        dilation=dilation,
        min_keypoints=3,
    )


# --- limb tables and sizes ---------------------------------------------------------------


def test_limb_tables_cover_body_feet_hands_but_not_face() -> None:
    sk = S.SKELETON
    assert sk.ndim == 2 and sk.shape[1] == 2 and np.issubdtype(sk.dtype, np.integer)
    assert len(sk) == len(S.BODY_LIMBS) + len(S.FOOT_LIMBS) + len(S.HAND_LIMBS)
    assert np.all(sk[:, 0] != sk[:, 1])
    assert len({tuple(sorted(e)) for e in sk.tolist()}) == len(sk), "duplicate limb"
    assert all(a < 17 and b < 17 for a, b in S.BODY_LIMBS)
    assert all(max(a, b) in range(17, 23) and min(a, b) < 23 for a, b in S.FOOT_LIMBS)
    assert all(max(a, b) >= 91 for a, b in S.HAND_LIMBS)
    assert not np.isin(sk, np.arange(23, 91)).any(), "face points are dots, not limbs"
    graph = np.zeros((NUM_KEYPOINTS, NUM_KEYPOINTS), bool)
    graph[sk[:, 0], sk[:, 1]] = True
    _, labels = _components(graph | graph.T)
    drawn = np.r_[0:23, 91:133]
    assert len(set(labels[drawn].tolist())) == 1, "body, feet and hands form one skeleton"


def _components(adjacency: np.ndarray) -> tuple[int, np.ndarray]:
    from scipy.sparse.csgraph import connected_components

    return connected_components(adjacency, directed=False)


@pytest.mark.parametrize(
    ("height", "width", "downscale", "expected"),
    [(576, 768, 4, (144, 192)), (640, 360, 4, (160, 90)), (3, 5, 4, (1, 1)), (7, 9, 1, (7, 9))],
)
def test_map_size(height: int, width: int, downscale: int, expected: tuple[int, int]) -> None:
    assert G.map_size(height, width, downscale) == expected


def test_map_size_rejects_bad_downscale() -> None:
    with pytest.raises(ValueError):
        G.map_size(100, 100, 0)


@pytest.mark.parametrize(
    ("size", "fraction", "expected"),
    [
        ((144, 192), 0.05, 7),
        ((640, 896), 0.05, 32),
        ((160, 90), 0.05, 5),
        ((40, 48), 0.075, 3),
        ((100, 100), 0.0, 1),
        ((100, 100), 0.004, 1),
        ((100, 100), 0.059, 6),
    ],
)
def test_disc_diameter_rounds_half_up_and_is_at_least_one(size, fraction, expected) -> None:
    # 7.2 -> 7; 32 -> 32; 4.5 -> 5; 3 -> 3; 0 -> 1; 0.4 -> 1; 5.9 -> 6
    assert S.disc_diameter(size, fraction) == expected


@pytest.mark.parametrize(
    ("size", "fraction", "expected"),
    [((144, 192), 0.01, 1), ((250, 300), 0.01, 3), ((640, 896), 0.01, 6), ((10, 10), 0.0, 1)],
)
def test_limb_thickness_rounds_half_up_and_is_at_least_one(size, fraction, expected) -> None:
    assert S.limb_thickness(size, fraction) == expected  # 1.44 -> 1; 2.5 -> 3; 6.4 -> 6


# --- presence ----------------------------------------------------------------------------


def test_present_characters_counts_confident_body_points_only() -> None:
    three = kp({0: (1, 1, 0.9), 5: (2, 2, 0.3), 6: (3, 3, 0.5)})  # 0.3 == threshold counts
    two = kp({0: (1, 1, 0.9), 5: (2, 2, 0.29), 6: (3, 3, 0.5)})
    face_and_hands = kp({0: (1, 1, 0.9), 6: (3, 3, 0.9), 30: (1, 1, 1.0), 95: (1, 1, 1.0)})
    frame = np.stack([three, two, face_and_hands])  # (3, 133, 3)
    got = G.present_characters(frame, THR, 3)
    assert got.tolist() == [True, False, False]
    clip = np.stack([frame, frame[::-1]])  # (2, 3, 133, 3)
    assert G.present_characters(clip, THR, 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert G.present_characters(frame, THR, 2).tolist() == [True, True, True]


def test_zero_score_never_counts_even_with_zero_threshold() -> None:
    frame = kp({0: (1, 1, 0.0), 1: (1, 1, 0.0), 2: (1, 1, 0.0)})[None]
    assert G.present_characters(frame, 0.0, 1).tolist() == [False]


# --- dilation masks: hand-computed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("diameter", "area", "half_width"),
    # pixel centres within D / 2 of the dot, boundary included: D = 2 is a plus, D = 3 the 3x3
    # square, D = 4 the 5x5 square minus 12 pixels farther than 2, D = 5 the 5x5 minus corners
    [(1, 1, 0), (2, 5, 1), (3, 9, 1), (4, 13, 2), (5, 21, 2)],
)
def test_a_dot_dilates_into_the_disc_of_pixel_centres_within_d_over_2(
    diameter: int, area: int, half_width: int
) -> None:
    # 3 confident body points at one pixel: their limbs have no length, they draw one pixel
    frame = kp({0: (10, 10, 0.9), 1: (10, 10, 0.9), 2: (10, 10, 0.9)})[None]
    masks = draw(frame, (21, 21), dilation=diameter / 21)
    yy, xx = np.mgrid[:21, :21]
    expected = (xx - 10) ** 2 + (yy - 10) ** 2 <= (diameter / 2) ** 2
    assert masks.shape == (1, 21, 21) and masks.dtype == bool
    assert np.array_equal(masks[0], expected) and masks.sum() == area
    assert masks[0, 10, 10 + half_width] and not masks[0, 10, 11 + half_width]


def test_horizontal_limbs_dilated_by_three() -> None:
    frame = line_person(5, 10, 15, 10, 0.9)[None]  # row 10, x 5..15 (11 px)
    size = (20, 30)
    raw = draw(frame, size, limb_width=0.01)[0]
    assert raw.sum() == 11 and raw[10, 5:16].all()
    grown = draw(frame, size, limb_width=0.01, dilation=3 / 20)[0]
    expected = np.zeros(size, bool)
    expected[9:12, 4:17] = True  # 3 x 13
    assert np.array_equal(grown, expected)


def test_thick_limbs_are_thin_lines_widened_by_a_disc() -> None:
    frame = line_person(10, 20, 30, 20, 0.9)[None]  # row 20, x 10..30
    size = (40, 40)
    assert S.limb_thickness(size, 5 / 40) == 5
    masks = draw(frame, size, limb_width=5 / 40)
    # the disc of diameter 5 (offsets within 2.5: the 5x5 square minus its corners) swept
    # along the line: rows 19..21 reach x 8..32, rows 18 and 22 x 9..31
    expected = np.zeros(size, bool)
    expected[19:22, 8:33] = True
    expected[[18, 22], 9:32] = True
    assert np.array_equal(masks[0], expected)
    # as a dot, the same disc
    dot = draw(kp({0: (5, 5, 0.9), 1: (5, 5, 0.9), 2: (5, 5, 0.9)})[None], size, limb_width=5 / 40)
    assert dot.sum() == 21 and dot[0, 3:8, 3:8].sum() == 21


def test_unconfident_end_breaks_the_limb() -> None:
    frame = kp({5: (10, 10, 0.9), 6: (20, 10, 0.1), 11: (10, 15, 0.9), 12: (3, 3, 0.9)})[None]
    size = (30, 30)
    masks = draw(frame, size)
    expected = np.zeros(size, bool)
    expected[10:16, 10] = True  # limb 5-11: x = 10, y 10..15
    # limb 11-12 from (10, 15) to (3, 3): n = 12 steps, x = floor(10.5 - 7k/12), y = 15 - k
    xs = [10, 9, 9, 8, 8, 7, 7, 6, 5, 5, 4, 4, 3]  # k = 6: 6.5 rounds half up to 7
    expected[np.arange(15, 2, -1), xs] = True
    assert np.array_equal(masks[0], expected) and masks.sum() == 18
    assert not masks[0, 10, 11:].any(), "no limb towards the unconfident right shoulder"


def test_face_points_are_dots() -> None:
    frame = line_person(5, 10, 15, 10, 0.9)
    frame[40] = (20, 3, 0.9)  # a face point far from the body
    frame[41] = (25, 3, 0.2)  # unconfident face point: not drawn
    size = (20, 30)
    masks = draw(frame[None], size)
    assert masks[0, 3, 20] and not masks[0, 3, 25]
    assert masks.sum() == 12


def test_absent_character_has_an_empty_mask() -> None:
    two_points = kp({5: (10, 10, 0.9), 6: (20, 10, 0.9), 7: (30, 10, 0.1)})
    frame = np.stack([two_points, line_person(5, 10, 15, 15, 0.9)])
    masks = draw(frame, (20, 40), limb_width=0.01, dilation=0.1)
    assert not masks[0].any() and masks[1].any()


def test_keypoints_are_mapped_pixel_centre_to_pixel_centre() -> None:
    # stored pixel 19 lies in map pixel 19 // 4 = 4 ((19 + 0.5) / 4 - 0.5 = 4.375)
    frame = kp({0: (19, 7, 0.9), 1: (19, 7, 0.9), 2: (19, 7, 0.9)})[None]
    masks = draw(frame, (40, 60), (10, 15))
    assert masks[0, 1, 4] and masks.sum() == 1


def test_no_characters_and_far_away_characters() -> None:
    empty = draw(np.zeros((0, NUM_KEYPOINTS, 3), np.float32), (40, 40), (10, 10))
    assert empty.shape == (0, 10, 10)
    outside = person(-500.0, -500.0)[None]
    masks = draw(outside, (40, 40), (10, 10), limb_width=0.01, dilation=0.2)
    assert masks.shape == (1, 10, 10) and not masks.any()


def test_limb_crossing_the_frame_from_outside_is_drawn() -> None:
    # both ends outside the frame, the limb passes through it
    frame = kp({5: (-20, 5, 0.9), 6: (50, 5, 0.9), 0: (-20, 5, 0.9)})[None]
    masks = draw(frame, (10, 30))
    assert masks[0, 5].all() and masks.sum() == 30


def test_dilation_masks_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        draw(np.zeros((2, 17, 3)), (10, 10))


# --- regions and occlusion: hand-computed --------------------------------------------------

# A: rows 0..3, cols 0..5 (24 px); B: rows 2..5, cols 3..8 (24 px); A∩B rows 2..3, cols 3..5
# (6 px); A∪B = 42 px.
A_RECT, B_RECT = (0, 3, 0, 5), (2, 5, 3, 8)
C_COLUMN = (0, 5, 4, 4)  # col 4, rows 0..5 (6 px), inside A∪B


def test_union_overlap_exclusive_of_two_rectangles() -> None:
    masks = rect_masks(6, 9, A_RECT, B_RECT)
    assert G.union_mask(masks).sum() == 42
    count = G.overlap_count(masks)
    assert count.shape == (6, 9) and np.issubdtype(count.dtype, np.integer)
    assert (count == 2).sum() == 6 and (count == 1).sum() == 36 and count.max() == 2
    excl = G.exclusive_regions(masks)
    assert excl[0].sum() == 18 and excl[1].sum() == 18
    assert not excl[:, 2:4, 3:6].any()
    assert G.occlusion_rate(masks, np.array([True, True])) == pytest.approx(6 / 42)


def test_occlusion_rate_of_three_characters() -> None:
    # covered >= 2: A∩B (6) + A∩C outside B (rows 0..1, col 4: 2) + B∩C outside A (rows 4..5,
    # col 4: 2) = 10; the union stays 42 (C lies inside A∪B)
    masks = rect_masks(6, 9, A_RECT, B_RECT, C_COLUMN)
    rate = G.occlusion_rate(masks, np.ones(3, bool))
    assert rate == pytest.approx(10 / 42)
    assert G.exclusive_regions(masks)[2].sum() == 0


def test_occlusion_rate_ignores_absent_and_needs_two_characters() -> None:
    masks = rect_masks(6, 9, A_RECT, B_RECT, C_COLUMN)
    assert G.occlusion_rate(masks, np.array([True, True, False])) == pytest.approx(6 / 42)
    assert G.occlusion_rate(masks, np.array([True, False, False])) is None
    assert G.occlusion_rate(masks[:0], np.zeros(0, bool)) is None
    empty = np.zeros((2, 6, 9), bool)
    assert G.occlusion_rate(empty, np.array([True, True])) is None
    disjoint = rect_masks(6, 9, (0, 0, 0, 0), (5, 5, 8, 8))
    assert G.occlusion_rate(disjoint, np.array([True, True])) == 0.0


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


# --- flow: hand-computed --------------------------------------------------------------------


def test_background_flow_of_a_translation_with_a_masked_region() -> None:
    flow = np.zeros((4, 6, 2), np.float32)
    flow[:, :3] = (3, 4)  # left half: |F| = 5
    flow[:, 3:] = (0, 1)  # right half: |F| = 1
    union = np.zeros((4, 6), bool)
    union[:, 4:] = True  # masks 8 of the 12 right-half pixels
    flow[union] = (100, 0)  # character motion: must not count
    bg = G.background_flow(flow, union)
    assert bg.shape == flow.shape and not bg[union].any()
    assert np.array_equal(bg[~union], flow[~union])
    # 12 px of 5 and 4 px of 1 -> 64 / 16 = 4
    assert G.background_flow_magnitude(flow, union) == pytest.approx(4.0)
    assert math.isnan(G.background_flow_magnitude(flow, np.ones((4, 6), bool)))


def test_flow_guider_input() -> None:
    flow = np.zeros((2, 3, 4, 2), np.float32)  # (T, h, w, 2)
    flow[..., 0], flow[..., 1] = 20.0, -10.0
    union = np.zeros((2, 3, 4), bool)
    union[1, :, :2] = True
    x = G.flow_guider_input(flow, union, 10.0)
    assert x.dtype == np.float32 and x.shape == flow.shape
    assert (x[union] == 1.0).all()
    assert (x[~union] == [2.0, -1.0]).all()
    assert np.array_equal(G.flow_guider_input(flow[1], union[1], 10.0), x[1])


# --- the clip: hand-computed ---------------------------------------------------------------

# 40 x 48 frames, maps at the same size (map_downscale 1): disc diameter 3 (0.075 * 40), lines
# 1 px. A: row 10, x 0..20 -> dilated rows 9..11, x 0..21 (66 px). B in frame 0: x 15..35 ->
# x 14..36 (69 px): A∩B x 14..21 = 24 px, A∪B x 0..36 = 111 px, rate 24/111 = 8/37. Frame 1:
# B has two confident body points: absent. Frame 2: B x 18..38 -> 17..39: A∩B 5 cols = 15 px,
# union 40 cols = 120 px, rate 1/8.
CLIP_CFG = GeometryConfig(map_downscale=1, dilation=0.075, limb_width=0.01)
CLIP_SIZE = (40, 48)


def _hand_clip() -> tuple[np.ndarray, np.ndarray]:
    a = line_person(0, 10, 20, 10, 0.9)
    a[8] = (30, 30, 0.1)  # unconfident right elbow: not drawn, not scored
    a[40] = (5, 10, 0.5)  # a face dot inside A's region: drawn, not scored
    b0 = line_person(15, 25, 35, 10, 0.6)
    b1 = line_person(15, 25, 35, 10, 0.6)
    b1[7, 2] = 0.2  # two confident body points left: absent
    b2 = line_person(18, 28, 38, 10, 0.6)
    keypoints = np.stack([np.stack([a, b0]), np.stack([a, b1]), np.stack([a, b2])])
    flow = np.zeros((3, *CLIP_SIZE, 2), np.float32)
    flow[0] = (7, 0)  # F_0 is not a background-flow frame: must be ignored
    flow[1] = (2, 0)
    flow[2] = (0, -4)
    flow[1:, 10, 0:21] = (50, 0)  # character motion inside A's region
    return keypoints, flow


def test_clip_geometry_hand_computed() -> None:
    keypoints, flow = _hand_clip()
    geo = G.clip_geometry(keypoints, flow, CLIP_SIZE, CLIP_CFG)
    assert geo.mask.shape == (3, *CLIP_SIZE) and geo.mask.dtype == bool
    assert [int(m.sum()) for m in geo.mask] == [111, 66, 120]
    assert geo.ranks.dtype == np.int8 and geo.ranks.tolist() == [[0, 1], [0, -1], [0, 1]]
    # feet tie (both at y = 10): track 0 is in front and owns the overlap
    assert (geo.order[0] == 255).sum() == 66 and (geo.order[0] == 191).sum() == 45
    assert (geo.order[0, 9:12, 14:22] == 255).all()
    assert np.array_equal(geo.order > 0, geo.mask)
    s = geo.stats
    assert set(s) == STATS_KEYS
    assert s["bg_flow_mean"] == pytest.approx(3.0)
    assert s["bg_flow_p95"] == pytest.approx(2.0 + 0.95 * 2.0)
    assert s["occlusion_rate_mean"] == pytest.approx((8 / 37 + 1 / 8) / 2)
    assert s["occlusion_rate_max"] == pytest.approx(8 / 37)
    assert (s["characters_max"], s["characters_mode"]) == (2, 2)
    assert s["multi_character_frac"] == pytest.approx(2 / 3)
    assert s["pose_score_mean"] == pytest.approx((0.9 * 3 + 0.6 * 2) / 5, abs=1e-6)
    json.dumps(s, allow_nan=False)
    assert all(type(v) in (int, float) or v is None for v in s.values())


def test_clip_ranks_follow_depth() -> None:
    keypoints, flow = _hand_clip()
    keypoints, flow = keypoints[:1], flow[:1]
    depth = np.zeros((1, *CLIP_SIZE), np.float32)
    depth[0, :, 24:] = 1.0  # B's side of the frame is nearer
    geo = G.clip_geometry(keypoints, flow, CLIP_SIZE, CLIP_CFG, depth)
    assert geo.ranks.tolist() == [[1, 0]]
    assert (geo.order[0, 9:12, 14:22] == 255).all() and (geo.order[0] == 191).sum() == 42
    depth = 1.0 - depth  # now A's side is nearer
    geo = G.clip_geometry(keypoints, flow, CLIP_SIZE, CLIP_CFG, depth)
    assert geo.ranks.tolist() == [[0, 1]]


def test_clip_with_no_tracks_and_with_one_character() -> None:
    flow = np.zeros((4, 10, 12, 2), np.float32)
    flow[..., 0] = 1.5
    keypoints = np.zeros((4, 0, NUM_KEYPOINTS, 3), np.float32)
    cfg = GeometryConfig()
    geo = G.clip_geometry(keypoints, flow, (40, 48), cfg)
    assert geo.mask.shape == (4, 10, 12) and not geo.mask.any() and not geo.order.any()
    assert geo.ranks.shape == (4, 0) and geo.ranks.dtype == np.int8
    assert geo.stats == {
        "bg_flow_mean": pytest.approx(1.5),
        "bg_flow_p95": pytest.approx(1.5),
        "occlusion_rate_mean": None,
        "occlusion_rate_max": None,
        "characters_max": 0,
        "characters_mode": 0,
        "multi_character_frac": 0.0,
        "pose_score_mean": None,
    }
    one = person(24, 20, scale=0.3)[None, None].repeat(4, 0)  # (4, 1, 133, 3)
    geo = G.clip_geometry(one, flow, (40, 48), cfg)
    assert geo.stats["characters_mode"] == 1 and geo.stats["occlusion_rate_mean"] is None
    assert geo.stats["pose_score_mean"] == pytest.approx(0.9)


def test_characters_mode_ties_go_to_the_smaller_count() -> None:
    single = person(24, 20, scale=0.3)
    pair = np.stack([single, person(10, 20, scale=0.3)])
    keypoints = np.stack([pair, pair, pair * [1, 1, 0]]).astype(np.float32)  # counts 2, 2, 0
    keypoints = np.concatenate([keypoints, keypoints[2:]])  # counts 2, 2, 0, 0
    flow = np.zeros((4, 10, 12, 2), np.float32)
    stats = G.clip_geometry(keypoints, flow, (40, 48), GeometryConfig()).stats
    assert stats["characters_mode"] == 0 and stats["characters_max"] == 2
    assert stats["bg_flow_mean"] == 0.0


def test_clip_geometry_rejects_flow_at_the_wrong_size() -> None:
    keypoints = np.zeros((2, 1, NUM_KEYPOINTS, 3), np.float32)
    with pytest.raises(ValueError, match="flow"):
        G.clip_geometry(keypoints, np.zeros((2, 9, 12, 2)), (40, 48), GeometryConfig())
    with pytest.raises(ValueError, match="depth"):
        G.clip_geometry(
            keypoints, np.zeros((2, 10, 12, 2)), (40, 48), GeometryConfig(), np.zeros((2, 9, 9))
        )


# --- properties --------------------------------------------------------------------------


def random_people(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """(n, 133, 3): people near the frame (some partly outside), mixed scores, some hands and
    face points, some too sparse to be present."""
    out = np.zeros((n, NUM_KEYPOINTS, 3), np.float32)
    for p in range(n):
        centre = rng.uniform(-0.2, 1.2, 2) * [width, height]
        scale = rng.uniform(0.05, 0.6) * min(height, width) / 100
        out[p, :23, :2] = BODY_TEMPLATE * scale + centre + rng.normal(0, 2, (23, 2))
        out[p, 23:, :2] = centre + rng.normal(0, 20 * scale, (110, 2))
        shown = rng.random(NUM_KEYPOINTS) < rng.choice([0.1, 0.5, 0.9])
        out[p, :, 2] = np.where(shown, rng.uniform(0.0, 1.0, NUM_KEYPOINTS), 0.0)
    return out


@st.composite
def scenes(draw, max_people: int = 5):
    """(keypoints (P, 133, 3), frame_size, out_size, GeometryConfig)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, max_people))
    frame_size = (draw(st.integers(8, 200)), draw(st.integers(8, 200)))
    out_size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    cfg = GeometryConfig(
        keypoint_threshold=draw(st.sampled_from([0.0, 0.3, 0.6])),
        min_keypoints=draw(st.integers(0, 5)),
        limb_width=draw(st.floats(0.0, 0.08)),
        dilation=draw(st.floats(0.0, 0.3)),
    )
    return random_people(rng, n, *frame_size), frame_size, out_size, cfg


def dda(canvas: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> None:
    """The documented 1-pixel line, one sample at a time: floor((a + 1/2) + k * ((b - a) / n))
    for k = 0..n-1 with n = ceil(max(|dx|, |dy|)), then floor(b + 1/2); off-canvas dropped."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    n = math.ceil(max(abs(dx), abs(dy)))
    pixels = [
        (math.floor((ax + 0.5) + k * (dx / n)), math.floor((ay + 0.5) + k * (dy / n)))
        for k in range(n)
    ]
    for px, py in [*pixels, (math.floor(bx + 0.5), math.floor(by + 0.5))]:
        if 0 <= px < canvas.shape[1] and 0 <= py < canvas.shape[0]:
            canvas[py, px] = 1


def disc(diameter: int) -> np.ndarray:
    """The pixel offsets within diameter / 2 of the centre."""
    r = diameter // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= (diameter / 2) ** 2


def reference_masks(keypoints, frame_size, out_size, cfg: GeometryConfig) -> np.ndarray:
    """The documented procedure, done plainly on the whole canvas, one stroke at a time: the
    DDA above for every confident limb and for every other confident point (a zero-length
    limb), scipy binary dilation by the disc of the line thickness, then by the disc of the
    dilation diameter."""
    (height, width), (h, w) = frame_size, out_size
    t = max(1, math.floor(cfg.limb_width * min(h, w) + 0.5))
    d = max(1, math.floor(cfg.dilation * min(h, w) + 0.5))
    out = np.zeros((len(keypoints), h, w), bool)
    for p, person_kp in enumerate(keypoints):
        score = person_kp[:, 2]
        conf = (score > 0) & (score >= cfg.keypoint_threshold)
        if conf[:17].sum() < cfg.min_keypoints:
            continue
        x = (person_kp[:, 0].astype(np.float64) + 0.5) * w / width - 0.5
        y = (person_kp[:, 1].astype(np.float64) + 0.5) * h / height - 0.5
        canvas = np.zeros((h, w), np.uint8)
        in_limb = np.zeros(NUM_KEYPOINTS, bool)
        strokes = [(a, b) for a, b in S.SKELETON.tolist() if conf[a] and conf[b]]
        for a, b in strokes:
            in_limb[[a, b]] = True
        strokes += [(i, i) for i in np.flatnonzero(conf & ~in_limb)]
        for a, b in strokes:
            dda(canvas, (x[a], y[a]), (x[b], y[b]))
        thick = ndimage.binary_dilation(canvas > 0, structure=disc(t))
        out[p] = ndimage.binary_dilation(thick, structure=disc(d))
    return out


@settings(max_examples=150, deadline=None)
@given(scenes())
def test_masks_equal_the_plain_full_canvas_procedure(scene) -> None:
    keypoints, frame_size, out_size, cfg = scene
    got = masks_of(keypoints, frame_size, out_size, cfg)
    want = reference_masks(keypoints, frame_size, out_size, cfg)
    assert got.shape == want.shape and got.dtype == bool
    assert np.array_equal(got, want)
    present = G.present_characters(keypoints, cfg.keypoint_threshold, cfg.min_keypoints)
    assert not got[~present].any()


def paint_reference(masks: np.ndarray, ranks: np.ndarray, levels: int) -> np.ndarray:
    """DESIGN §3 literally: paint full regions from the farthest rank to the nearest."""
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


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 6), st.integers(1, 4), st.booleans())
def test_clip_geometry_agrees_with_the_per_frame_functions(
    seed: int, n: int, frames: int, with_depth: bool
) -> None:
    rng = np.random.default_rng(seed)
    cfg = GeometryConfig(map_downscale=int(rng.choice([1, 2, 4])))
    frame_size = (96, 128)
    h, w = G.map_size(*frame_size, cfg.map_downscale)
    keypoints = np.stack([random_people(rng, n, *frame_size) for _ in range(frames)])
    if n:  # a present character entirely off the map: nothing to draw
        keypoints[rng.integers(frames), rng.integers(n), :, :2] -= 10_000
    flow = rng.normal(0, 2, (frames, h, w, 2)).astype(np.float32)
    depth = rng.random((frames, h, w)).astype(np.float32) if with_depth else None
    geo = G.clip_geometry(keypoints, flow, frame_size, cfg, depth)
    thr, rates, b = cfg.keypoint_threshold, [], []
    for t in range(frames):
        masks = masks_of(keypoints[t], frame_size, (h, w), cfg)  # (P, h, w)
        present = G.present_characters(keypoints[t], thr, cfg.min_keypoints)
        assert np.array_equal(geo.mask[t], G.union_mask(masks))
        if depth is None:
            near = G.nearness_from_feet(keypoints[t], present, thr)
        else:
            near = G.nearness_from_depth(depth[t], masks, present)
        assert np.array_equal(geo.ranks[t], G.ranks_from_nearness(near, present))
        assert np.array_equal(
            geo.order[t], G.depth_order_map(masks, geo.ranks[t], cfg.order_levels)
        )
        rates.append(G.occlusion_rate(masks, present))
        b.append(G.background_flow_magnitude(flow[t], geo.mask[t]) if t else math.nan)
    rates_ok = [r for r in rates if r is not None]
    assert geo.stats["occlusion_rate_mean"] == (
        pytest.approx(np.mean(rates_ok)) if rates_ok else None
    )
    assert geo.stats["occlusion_rate_max"] == (max(rates_ok) if rates_ok else None)
    b_ok = [v for v in b if not math.isnan(v)]
    assert geo.stats["bg_flow_mean"] == (pytest.approx(np.mean(b_ok)) if b_ok else None)


def test_a_long_crowded_clip_matches_its_frames() -> None:
    # 16 frames x 6 large characters: their crops fill several shelves of the packed atlas
    rng = np.random.default_rng(7)
    cfg = GeometryConfig(map_downscale=1, dilation=0.08)
    frame_size = (96, 128)
    keypoints = np.stack(
        [
            np.stack([person(cx, 50 + rng.uniform(-5, 5), scale=0.9) for cx in range(10, 130, 20)])
            for _ in range(16)
        ]
    )  # (16, 6, 133, 3)
    flow = np.zeros((16, *frame_size, 2), np.float32)
    geo = G.clip_geometry(keypoints, flow, frame_size, cfg)
    for t in range(16):
        masks = masks_of(keypoints[t], frame_size, frame_size, cfg)
        assert np.array_equal(geo.mask[t], G.union_mask(masks))
        assert np.array_equal(geo.order[t], G.depth_order_map(masks, geo.ranks[t], 4))
    assert geo.stats["characters_max"] == 6 and geo.stats["occlusion_rate_max"] > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 4))
def test_clip_geometry_is_invariant_to_track_permutation(seed: int, n: int, frames: int) -> None:
    rng = np.random.default_rng(seed)
    cfg = GeometryConfig()
    frame_size = (96, 128)
    keypoints = np.stack([random_people(rng, n, *frame_size) for _ in range(frames)])
    h, w = G.map_size(*frame_size, cfg.map_downscale)
    flow = rng.normal(0, 2, (frames, h, w, 2)).astype(np.float32)
    present = G.present_characters(keypoints, cfg.keypoint_threshold, cfg.min_keypoints)
    near = G.nearness_from_feet(keypoints, present, cfg.keypoint_threshold)  # (T, P)
    for t in range(frames):  # ties are broken by track index, which a permutation changes
        assume(len(set(near[t, present[t]].tolist())) == present[t].sum())
    perm = rng.permutation(n)
    geo = G.clip_geometry(keypoints, flow, frame_size, cfg)
    permuted = G.clip_geometry(keypoints[:, perm], flow, frame_size, cfg)
    assert np.array_equal(geo.mask, permuted.mask)
    assert np.array_equal(geo.order, permuted.order)
    assert np.array_equal(geo.ranks[:, perm], permuted.ranks)
    approx = {k: pytest.approx(v) if isinstance(v, float) else v for k, v in permuted.stats.items()}
    assert geo.stats == approx


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0.3, 0.7),
    st.floats(0.3, 0.7),
    st.floats(0.5, 1.2),
    st.integers(48, 100),
    st.integers(48, 100),
)
def test_masks_scale_with_resolution(cx: float, cy: float, scale: float, h: int, w: int) -> None:
    frame_size = (480, 640)
    people = person(cx * 640, cy * 480, scale=scale * 2)[None]
    cfg = GeometryConfig()
    small = masks_of(people, frame_size, (h, w), cfg)[0]
    large = masks_of(people, frame_size, (2 * h, 2 * w), cfg)[0]
    assert 3.0 <= large.sum() / small.sum() <= 5.0
    down = large.reshape(h, 2, w, 2).mean((1, 3)) >= 0.5
    iou = (down & small).sum() / (down | small).sum()
    assert iou >= 0.75, iou


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 639), st.integers(0, 479), st.sampled_from([1, 2, 4, 8]))
def test_a_stored_pixel_lands_in_the_map_pixel_that_contains_it(x, y, downscale) -> None:
    frame_size = (480, 640)
    out_size = G.map_size(*frame_size, downscale)
    dot = kp({0: (x, y, 1.0), 1: (x, y, 1.0), 2: (x, y, 1.0)})[None]
    masks = draw(dot, frame_size, out_size)
    assert masks.sum() == 1 and masks[0, y // downscale, x // downscale]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.5, 20.0))
def test_flow_inside_the_mask_never_matters(seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    flow = rng.normal(0, 3, (12, 16, 2)).astype(np.float32)
    union = rng.random((12, 16)) < 0.4
    other = flow.copy()
    other[union] = rng.normal(0, 50, (int(union.sum()), 2))
    b = G.background_flow_magnitude(flow, union)
    assert b == pytest.approx(G.background_flow_magnitude(other, union), nan_ok=True)
    assert np.array_equal(G.background_flow(flow, union), G.background_flow(other, union))
    x = G.flow_guider_input(other, union, scale)
    assert (x[union] == 1.0).all()
    np.testing.assert_allclose(x[~union], flow[~union] / scale, rtol=1e-6)
    if (~union).any():
        assert b == pytest.approx(float(np.linalg.norm(flow[~union], axis=-1).mean()), rel=1e-5)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-10.0, 50.0), min_size=4, max_size=4))
def test_thin_limbs_are_8_connected_lines_close_to_the_segment(ends: list[float]) -> None:
    ax, ay, bx, by = ends
    frame = kp({5: (ax, ay, 0.9), 6: (bx, by, 0.9), 0: (ax, ay, 0.9)})[None]
    size = (40, 40)
    mask = draw(frame, size)[0]
    ys, xs = np.nonzero(mask)
    for px, py in ((ax, ay), (bx, by)):  # both end pixels exactly, when on the map
        ex, ey = math.floor(px + 0.5), math.floor(py + 0.5)
        if 0 <= ex < 40 and 0 <= ey < 40:
            assert mask[ey, ex]
    if len(xs):
        assert ndimage.label(mask, structure=np.ones((3, 3)))[1] == 1, "one 8-connected piece"
        # every pixel rounds a point of the segment (<= 1/2 off in x and in y), so it lies
        # within sqrt(1/2) of the segment
        d = np.array([bx - ax, by - ay])
        t = np.clip(((np.stack([xs, ys], 1) - [ax, ay]) @ d) / max(d @ d, 1e-12), 0, 1)
        off = np.stack([xs, ys], 1) - (np.array([ax, ay]) + t[:, None] * d)
        assert (np.linalg.norm(off, axis=1) <= math.sqrt(0.5) + 1e-9).all()
    opencv = np.zeros(size, np.uint8)
    a16, b16 = (round(ax * 16), round(ay * 16)), (round(bx * 16), round(by * 16))
    cv2.line(opencv, a16, b16, 1, 1, cv2.LINE_8, 4)
    if min(ends) >= 0 and max(ends) <= 39:  # inside the map (OpenCV clips ends coarsely)
        # the same line as OpenCV's up to rasterisation: every pixel of one is next to the other
        far = ndimage.distance_transform_edt(~mask)[opencv > 0].max()
        back = ndimage.distance_transform_edt(opencv == 0)[mask].max()
        assert max(far, back) <= 1.5
