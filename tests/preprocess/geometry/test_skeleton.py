"""The skeleton rasteriser (preprocess.geometry.skeleton): limb tables, sizes, presence, and the
fast path (crops, vectorised lines, one atlas dilation) against the documented procedure done
plainly on a whole canvas (a per-sample DDA, scipy disc dilations). No timings here: speed
belongs to benchmarks/."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from preprocess.geometry import GeometryConfig
from preprocess.geometry import skeleton as S
from preprocess.geometry.layout import NUM_KEYPOINTS
from tests.preprocess.geometry.helpers import THR, draw, kp, masks_of, scenes

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
    got = S.present_characters(frame, THR, 3)
    assert got.tolist() == [True, False, False]
    clip = np.stack([frame, frame[::-1]])  # (2, 3, 133, 3)
    assert S.present_characters(clip, THR, 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert S.present_characters(frame, THR, 2).tolist() == [True, True, True]


def test_zero_score_never_counts_even_with_zero_threshold() -> None:
    frame = kp({0: (1, 1, 0.0), 1: (1, 1, 0.0), 2: (1, 1, 0.0)})[None]
    assert S.present_characters(frame, 0.0, 1).tolist() == [False]


# --- the fast path against the plain procedure -----------------------------------------


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
    present = S.present_characters(keypoints, cfg.keypoint_threshold, cfg.min_keypoints)
    assert not got[~present].any()


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
