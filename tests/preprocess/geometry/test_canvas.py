"""The model's canvas (preprocess.geometry.canvas): the crop that brings frames, keypoints and
flow to it, ranks among the characters on the canvas, and the reference characters' nearness.
The reported crop case (a character cropped out of the canvas) is in test_canvas_ranks.py."""

from __future__ import annotations

import numpy as np
import pytest

from preprocess.geometry import GeometryConfig
from preprocess.geometry.canvas import Crop, canvas_ranks, character_masks, reference_nearness
from tests.preprocess.geometry.helpers import person

GEO = GeometryConfig()


@pytest.mark.parametrize(
    ("source", "out"), [((720, 1280), (128, 96)), ((400, 300), (96, 128)), ((64, 48), (128, 96))]
)
def test_crop_moves_keypoints_with_the_image(source: tuple[int, int], out: tuple[int, int]) -> None:
    crop = Crop(source, out)
    image = np.zeros((*source, 3), np.uint8)
    y, x = int(source[0] * 0.45), int(source[1] * 0.55)
    image[y - 2 : y + 3, x - 2 : x + 3] = 255  # a 5x5 dot
    cropped = crop.image(image)
    assert cropped.shape == (*out, 3)
    ys, xs = np.nonzero(cropped[..., 0] > 60)
    weights = cropped[ys, xs, 0].astype(float)
    seen = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    mapped = crop.keypoints(np.array([[x, y, 1.0]], np.float32))[0, :2]
    assert np.abs(seen - mapped).max() < 1.0


def test_crop_zeroes_absent_points() -> None:
    kps = np.array([[10, 20, 0.0], [10, 20, 0.5]], np.float32)
    out = Crop((100, 100), (50, 50)).keypoints(kps)
    assert out[0].tolist() == [0, 0, 0] and out[1, 2] == 0.5


def test_canvas_ranks_follow_the_priority_among_visible_tracks() -> None:
    priority = np.broadcast_to(np.array([2, 0, 1]), (3, 3))
    present = np.array([[True, True, True], [True, False, True], [True, False, False]])
    assert canvas_ranks(priority, present).tolist() == [[2, 0, 1], [1, -1, 0], [0, -1, -1]]


def test_reference_nearness_from_a_depth_map_or_the_feet() -> None:
    size = (128, 96)
    # a stands lower (lowest foot point y = 65 + 55: nearer by the feet heuristic); b stands
    # on the right half of the canvas
    a, b = person(30, 65), person(70, 50)
    people = np.stack([a, b, np.zeros_like(a)])  # the third is absent
    feet = reference_nearness(people, GEO)
    assert feet[:2].tolist() == [120.0, 105.0] and np.isnan(feet[2])
    depth = np.zeros(size, np.float32)
    depth[:, 50:] = 1.0  # the right half is nearer: b in front, whatever the feet say
    near = reference_nearness(people, GEO, depth)
    assert near[1] > near[0] and np.isnan(near[2])
    masks = character_masks(people, size, GEO)  # (3, H, W); b's exclusive region counts
    assert near[1] == pytest.approx(depth[masks[1] & ~masks[0]].mean())
