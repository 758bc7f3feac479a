"""Ranks among the characters on the canvas (preprocess.geometry.canvas.canvas_ranks), on the
reported case: a 640x1138 stored frame brought to the 896x640 portrait canvas, two characters,
the front one (stored rank 0, ranked on the whole frame) cropped out. Painting the stored
ranks left the only visible character at level 191 (the canvas held {0, 191}); ranked among
the characters on the canvas it is the front one, 255 (the canvas holds {0, 255}).

The training and inference paths of the same case are in tests/train/test_canvas_ranks.py."""

from __future__ import annotations

import numpy as np

from preprocess.geometry import GeometryConfig, depth_order_map, present_characters
from preprocess.geometry.canvas import (
    Crop,
    build_guider_arrays,
    canvas_ranks,
    character_masks,
)
from tests.preprocess.geometry.helpers import person

GEO = GeometryConfig()
STORED = (640, 1138)  # (H, W) stored frame (short side 640, 16:9)
CANVAS = (896, 640)  # (H, W) the paper's portrait canvas


def crop_case() -> tuple[np.ndarray, np.ndarray]:
    """(keypoints (P=2, 133, 3) in stored pixels, stored ranks (2,)): character 0 in front at
    the far left, character 1 behind it in the middle of the frame."""
    front = person(150, 330, scale=4.0)  # x in [70, 230]: the crop keeps x in ~[340, 797]
    back = person(570, 330, scale=4.0)
    return np.stack([front, back]), np.array([0, 1], np.int8)


def test_the_crop_keeps_the_back_character_only() -> None:
    stored, _ = crop_case()
    crop = Crop(STORED, CANVAS)
    assert crop.resized == (896, 1593) and crop.offset == (0, 476)
    canvas = crop.keypoints(stored)  # (2, 133, 3)
    assert present_characters(stored, GEO.keypoint_threshold, GEO.min_keypoints).all()
    masks = character_masks(canvas, CANVAS, GEO)  # (2, 896, 640)
    assert not masks[0].any() and masks[1].any()


def test_the_visible_character_is_painted_as_the_front_one() -> None:
    stored, ranks = crop_case()
    canvas = Crop(STORED, CANVAS).keypoints(stored)[None]  # (T=1, 2, 133, 3)
    masks = character_masks(canvas[0], CANVAS, GEO)
    before = set(np.unique(depth_order_map(masks, ranks, GEO.order_levels)).tolist())
    arrays = build_guider_arrays(canvas, canvas[0], ranks[None], CANVAS, GEO)
    assert arrays.order is not None
    after = set(np.unique(arrays.order).tolist())
    assert before == {0, 191}, f"the stored ranks painted {before}"  # the reported bug
    assert after == {0, 255}, f"canvas levels before {before}, after {after}"


def test_canvas_ranks_renumber_the_visible_characters_in_their_order() -> None:
    # keys: stored ranks of five tracks; track 3 absent, tracks 0 and 2 off the canvas
    keys = np.array([[1, 3, 0, -1, 2]])
    visible = np.array([[False, True, False, True, True]])
    assert canvas_ranks(keys, visible).tolist() == [[-1, 1, -1, -1, 0]]
    # equal keys (the held order of two matched tracks): the lower track first
    assert canvas_ranks(np.array([4, 4, 2]), np.ones(3, bool)).tolist() == [1, 2, 0]
