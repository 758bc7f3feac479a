"""Validation animates a held-out clip exactly as ``python -m model.animate`` animates the same
clip given as files (its first frame as the reference image, its stored poses as the driving
pose file and the reference pose): zero background flow, the reference's depth order held for
every frame, one ``model.pipeline.generate``. Evaluation uses the same function
(tests/train/test_evaluate.py checks evaluation against validation)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from model import animate
from model.components import build_image_processor
from model.config import SamplingConfig
from model.folder import load_model_folder
from model.init import main as model_init
from shards.reader import iter_samples
from tests.model.helpers import perturb_
from tests.train.helpers import write_train_output
from train.examples import inference_example
from train.validation import validation_sample

SIZE = (32, 48)  # canvas (height, width)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("validation_as_inference")
    write_train_output(base / "data", [[3]], t=8)
    assert model_init(["--preset", "tiny", "--out", str(base / "model")]) == 0
    return {"base": base, "data": base / "data", "model": base / "model"}


def test_validation_equals_model_animate_on_the_same_clip(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    model = load_model_folder(setup["model"])
    perturb_(model.guiders, scale=0.3)  # fresh guiders output zeros: make their inputs count
    sample = next(iter(iter_samples(str(setup["data"]))))
    # The dataset's depth backend is the feet heuristic (no depth map); its per-frame ranks
    # swap the characters from frame 3 on. Inference holds the reference's order instead.
    ranks = sample.ranks.copy()
    ranks[3:] = np.where(ranks[3:] >= 0, ranks[3:].max() - ranks[3:], -1)
    sample = replace(sample, depth=None, ranks=ranks)
    frames = 6
    sampling = SamplingConfig(
        steps=2, height=SIZE[0], width=SIZE[1], window=4, stride=2, seed=7, guidance_scale=1.5
    )
    processor = build_image_processor(model.cfg)
    geo = model.cfg.geometry
    example = inference_example(sample, 0, list(range(frames)), SIZE, geo, processor)
    validated = validation_sample(model, example, sampling).generated
    # The same clip as files for python -m model.animate.
    h, w = sample.frames.shape[1:3]
    cv2.imwrite(str(tmp_path / "ref.png"), cv2.cvtColor(sample.frames[0], cv2.COLOR_RGB2BGR))
    np.save(tmp_path / "driving.npy", sample.pose[:frames])
    np.save(tmp_path / "ref_pose.npy", sample.pose[0])
    argv = ["--checkpoint", str(setup["model"]), "--reference", str(tmp_path / "ref.png")]
    argv += ["--driving", str(tmp_path / "driving.npy"), "--pose-size", f"{h}x{w}"]
    argv += ["--reference-pose", str(tmp_path / "ref_pose.npy"), "--out", str(tmp_path / "o.mp4")]
    argv += ["--steps", "2", "--height", str(SIZE[0]), "--width", str(SIZE[1])]
    argv += ["--window", "4", "--stride", "2", "--seed", "7", "--guidance-scale", "1.5"]
    animated, job = animate.animate(animate.parse_args(argv), model, progress=False)
    assert validated.shape == animated.shape == (frames, *SIZE, 3)
    assert np.array_equal(job.reference, example.reference)
    assert np.array_equal(validated, animated)
