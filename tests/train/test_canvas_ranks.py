"""The reported crop case through training and inference: a 640x1138 stored clip brought to the
896x640 portrait canvas, two characters, the front one (stored rank 0 on the whole frame)
cropped out. A training example (train.examples.build_example), inference's inputs
(model.inputs.guider_arrays, what model.animate draws) and validation's
(train.examples.inference_example) all paint the only visible character as the front one:
the canvas holds {0, 255}, where painting the stored ranks gave {0, 191}.

The geometry of the case is in tests/preprocess/geometry/test_canvas_ranks.py."""

from __future__ import annotations

import numpy as np

from model.components import build_image_processor
from model.config import preset_config
from model.inputs import guider_arrays, reference_order
from preprocess.geometry import GeometryConfig, depth_order_map
from preprocess.geometry.canvas import Crop, character_masks
from shards.schema import Sample
from tests.preprocess.geometry.test_canvas_ranks import CANVAS, STORED, crop_case
from train.examples import build_example, inference_example

GEO = GeometryConfig()
T = 3


def crop_sample() -> Sample:
    """Three stored frames of the case: the front character at the far left, the back one in
    the middle; stored ranks [0, 1] in every frame."""
    people, ranks = crop_case()
    h, w = STORED
    return Sample(
        key="crop_case",
        frames=np.full((T, h, w, 3), 90, np.uint8),
        fps=25.0,
        pose=np.stack([people] * T),  # (T, 2, 133, 3)
        flow=np.zeros((T, h // 4, w // 4, 2), np.float32),
        mask=np.zeros((T, h // 4, w // 4), bool),
        order=np.zeros((T, h // 4, w // 4), np.uint8),
        ranks=np.stack([ranks] * T),
        meta={},
    )


def levels(order: np.ndarray | None) -> set[int]:
    assert order is not None
    return set(np.unique(order).tolist())


def test_training_paints_the_visible_character_in_front() -> None:
    sample = crop_sample()
    processor = build_image_processor(preset_config("tiny"))
    example = build_example(sample, 0, [1, 2], CANVAS, GEO, processor)
    canvas = Crop(STORED, CANVAS).keypoints(sample.pose[1])
    stored = depth_order_map(character_masks(canvas, CANVAS, GEO), sample.ranks[1], 4)
    assert levels(stored) == {0, 191}  # before: the stored whole-frame ranks
    assert levels(example.guiders.order) == {0, 255}


def test_inference_and_validation_paint_the_visible_character_in_front() -> None:
    sample = crop_sample()
    crop = Crop(STORED, CANVAS)
    driving = crop.keypoints(sample.pose)  # (T, 2, 133, 3)
    # The reference ranks the cropped-out character first (as its depth map would).
    arrays = guider_arrays(driving, driving[0], np.array([0, 1]), CANVAS, GEO)
    assert levels(arrays.order) == {0, 255}
    match, _ = reference_order(driving[0], driving, CANVAS, GEO)
    assert match.tolist() == [0, 1]
    processor = build_image_processor(preset_config("tiny"))
    example = inference_example(sample, 0, [0, 1, 2], CANVAS, GEO, processor)
    assert levels(example.guiders.order) == {0, 255}
    assert example.guiders.flow is not None and example.guiders.flow.max() == 1.0  # zero flow
