"""Shared builders of the geometry tests: synthetic people, rectangles as masks, random scenes.

Hand cases mostly use frame_size == out_size (the identity mapping) and 1-pixel lines, so
every mask, area and statistic can be counted by hand in the tests' comments."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from preprocess.geometry import GeometryConfig, dilation_masks
from preprocess.geometry.layout import NUM_KEYPOINTS

THR = 0.3
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
    return dilation_masks(
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
    return dilation_masks(
        keypoints,
        frame_size,
        out_size or frame_size,
        keypoint_threshold=THR,
        limb_width=limb_width,
        dilation=dilation,
        min_keypoints=3,
    )


# A: rows 0..3, cols 0..5 (24 px); B: rows 2..5, cols 3..8 (24 px); A∩B rows 2..3, cols 3..5
# (6 px); A∪B = 42 px.
A_RECT, B_RECT = (0, 3, 0, 5), (2, 5, 3, 8)
C_COLUMN = (0, 5, 4, 4)  # col 4, rows 0..5 (6 px), inside A∪B


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
