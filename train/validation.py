"""Periodic validation: animate held-out clips the way inference does, write videos.

For each held-out clip (``validation.clips`` of them, kept out of training by the loader) the
reference is the clip's first frame and the driving poses are its first ``validation.frames``
frames (``data.frame_stride`` apart); the guider inputs are built as ``python -m
model.animate`` builds them (:func:`train.examples.inference_example`: zero background flow,
the reference frame's depth order matched to the tracks and held for every frame, only the
model's guiders), then :func:`model.pipeline.generate` — the inference sequence of
``python -m model.animate`` and ``python -m train.evaluate`` — samples with DDIM and
classifier-free guidance. Written (:func:`shards.video.write_video`) to
``output_dir/validation/step_NNNNNNNN_KEY.mp4`` as a grid ``real | pose | generated`` per
frame, plus the middle frame of that grid as a TensorBoard image.

:func:`validation_sample` returns the generated and real frames of a clip: the hook where
evaluation metrics plug in, through :data:`METRICS` (L1, PSNR, SSIM of every validation clip,
logged to TensorBoard as ``validation/l1`` ... and in the log line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from model.components import build_image_processor
from model.composed import AnimationModel
from model.config import SamplingConfig
from model.guiders import Conditions
from model.metrics.frame import FRAME_METRICS
from model.pipeline import generate
from shards.reader import iter_samples
from shards.video import write_video
from train.config import TrainConfig
from train.examples import Example, inference_example, needed_frames

log = logging.getLogger(__name__)

Metric = Callable[[np.ndarray, np.ndarray], float]


def _clip_mean(name: str) -> Metric:
    def metric(generated: np.ndarray, real: np.ndarray) -> float:
        return float(FRAME_METRICS[name](generated, real).mean())

    return metric


METRICS: dict[str, Metric] = {name: _clip_mean(name) for name in FRAME_METRICS}
"""name -> metric(generated (T, H, W, 3) uint8, real (T, H, W, 3) uint8); each is logged as
``validation/NAME``: the cheap per-frame metrics of :mod:`model.metrics.frame` (L1, PSNR,
SSIM, averaged over the clip's frames, at the training canvas without the unified standard's
crop, so they follow a run, not a published table; ``python -m train.evaluate`` gives those)."""


@dataclass
class ValidationResult:
    key: str
    generated: np.ndarray  # (T, H, W, 3) uint8
    real: np.ndarray  # (T, H, W, 3) uint8
    pose: np.ndarray | None  # (T, H, W, 3) uint8 pose maps

    def grid(self) -> np.ndarray:
        """(T, H, 3W, 3): real | pose | generated."""
        pose = np.zeros_like(self.real) if self.pose is None else self.pose
        return np.concatenate([self.real, pose, self.generated], axis=2)


def validation_examples(cfg: TrainConfig, keys: list[str], model: AnimationModel) -> list[Example]:
    """The held-out clips as inference builds them: reference frame 0, the first frames as
    driving (:func:`train.examples.inference_example`)."""
    processor = build_image_processor(model.cfg)
    size = (cfg.data.height, cfg.data.width)
    examples = []
    geo, inputs = model.cfg.geometry, model.cfg.guiders.names
    fields = ("mp4", "pose.npy", "ranks.npy", "depth.npz", "json")
    for sample in iter_samples(cfg.data.root, fields=fields, keys=keys):
        stride = cfg.data.frame_stride
        frames = min(cfg.validation.frames, (len(sample.frames) - 1) // stride + 1)
        indices = list(range(0, needed_frames(frames, stride), stride))
        examples.append(inference_example(sample, 0, indices, size, geo, processor, inputs))
    return examples


@torch.no_grad()
def validation_sample(
    model: AnimationModel, example: Example, sampling: SamplingConfig
) -> ValidationResult:
    """Animate one example (reference image + driving guider inputs) with ``sampling``
    (:func:`model.pipeline.generate`)."""
    conditions = Conditions.from_arrays(example.guiders)
    generated = generate(model, example.reference, conditions, len(example.frames), sampling)
    return ValidationResult(
        key=example.key, generated=generated, real=example.frames, pose=example.guiders.pose
    )


def run_validation(
    model: AnimationModel,
    examples: list[Example],
    cfg: TrainConfig,
    step: int,
    window: int,
) -> list[tuple[ValidationResult, Path, dict[str, float]]]:
    """Animate every held-out example and write its grid video; (result, video, metrics)."""
    v = cfg.validation
    sampling = SamplingConfig(
        steps=v.steps,
        guidance_scale=v.guidance_scale,
        window=window,
        stride=max(1, window // 2),
        height=cfg.data.height,
        width=cfg.data.width,
        seed=v.seed,
    )
    out_dir = Path(cfg.output_dir) / "validation"
    results = []
    was_training = model.training
    model.eval()
    try:
        for example in examples:
            result = validation_sample(model, example, replace(sampling))
            path = out_dir / f"step_{step:08d}_{example.key}.mp4"
            write_video(path, result.grid(), fps=8.0)
            metrics = {name: fn(result.generated, result.real) for name, fn in METRICS.items()}
            log.info("validation step %d: %s %s", step, path, metrics or "")
            results.append((result, path, metrics))
    finally:
        model.train(was_training)
        model.vae.eval()
        model.image_encoder.eval()
    return results
