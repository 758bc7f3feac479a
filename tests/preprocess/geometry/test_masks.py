"""Dilation masks, regions and occlusion (preprocess.geometry.masks): hand-computed cases and
hypothesis properties (docs/design.md §3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess import geometry as G
from preprocess.geometry import GeometryConfig
from preprocess.geometry import skeleton as S
from preprocess.geometry.layout import NUM_KEYPOINTS
from tests.preprocess.geometry.helpers import (
    A_RECT,
    B_RECT,
    C_COLUMN,
    draw,
    kp,
    line_person,
    masks_of,
    person,
    rect_masks,
)

# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "downscale", "expected"),
    [(576, 768, 4, (144, 192)), (640, 360, 4, (160, 90)), (3, 5, 4, (1, 1)), (7, 9, 1, (7, 9))],
)
def test_map_size(height: int, width: int, downscale: int, expected: tuple[int, int]) -> None:
    assert G.map_size(height, width, downscale) == expected


def test_map_size_rejects_bad_downscale() -> None:
    with pytest.raises(ValueError):
        G.map_size(100, 100, 0)


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


# --- properties --------------------------------------------------------------------------


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
