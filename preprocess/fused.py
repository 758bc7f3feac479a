"""The fused extractor stage: pose -> flow -> depth in one object holding all three models.

On Ray (``run.extractors=fused``, the default on a cluster with GPUs) consecutive model stages
of the stage table run in one actor pool, each actor a :class:`FusedExtractors` with every
model loaded on its device: a clip's frames are shipped to the actor once (decode ->
extractors; the frames were encoded in the decode task, so nothing after the models needs the
pixels and they do not travel on), instead of once per model stage. Each model still
runs as its own stage through ``preprocess.stages.run_stages`` (its time, its errors, the
video's deadline). ``run.extractors=separate`` keeps one actor pool per model stage;
``inline`` (the default without GPUs) runs every stage of a video in one actor
(``preprocess.inline``). Also usable alone, e.g. by a GPU check::

    extract = FusedExtractors(cfg)
    clip = extract(frames)  # (T, H, W, 3) uint8 RGB -> Clip with keypoints, flow, depth
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from preprocess import stages
from preprocess.clip import Clip, VideoInfo
from preprocess.config import PreprocessConfig
from preprocess.stages import ModelStage, Stage, run_stages

MEMORY_SOURCE = "memory://frames"
"""``VideoInfo.source`` of a clip made from bare frames (``FusedExtractors(cfg)(frames)``)."""


def model_run(table: Sequence[Stage] | None = None) -> tuple[Stage, ...]:
    """The first run of consecutive model stages of ``table`` (pose, flow, depth by default)."""
    table = stages.STAGES if table is None else table
    first = next((i for i, s in enumerate(table) if s.is_model), len(table))
    end = next((i for i in range(first, len(table)) if not table[i].is_model), len(table))
    return tuple(table[first:end])


def frames_clip(frames: np.ndarray, fps: float = 30.0) -> Clip:
    """A clip of bare frames (T, H, W, 3) uint8, stored as they are (no source file)."""
    t, h, w, _ = frames.shape
    info = VideoInfo(MEMORY_SOURCE, "0" * 16, w, h, fps, t, 0, w, h, fps)
    return Clip(info, 0, frames, np.arange(t, dtype=np.int64))


class FusedExtractors:
    """Every model stage of ``group`` (default: :func:`model_run` of the table), loaded once;
    a call runs a clip through all of them in table order, as their own stages."""

    def __init__(self, cfg: PreprocessConfig, group: Sequence[Stage] | None = None) -> None:
        group = model_run() if group is None else tuple(group)
        missing = [s.name for s in group if s.model is None]
        if missing:
            raise ValueError(f"FusedExtractors takes model stages only, not {missing}")
        self.timeout_s = cfg.run.video_timeout_s
        self.models: dict[str, ModelStage] = {}
        for s in group:
            assert s.model is not None
            self.models[s.name] = s.model(cfg)
        self.steps = [(s, self.models[s.name]) for s in group]

    @property
    def names(self) -> list[str]:
        return [s.name for s, _ in self.steps]

    def backends(self) -> dict[str, Any]:
        """Identity of each loaded backend, by kind (as every clip's ``backends``)."""
        return {k: v for m in self.models.values() for k, v in m.backends().items()}

    def run(self, clip: Clip, deadline: float | None = None) -> Clip:
        """The clip through every model (a failure raises StageError naming its stage)."""
        return run_stages(self.steps, clip, deadline, self.timeout_s)

    def __call__(self, clip: Clip | np.ndarray) -> Clip:
        """A clip, or a clip's frames (T, H, W, 3) uint8 RGB, through every model."""
        if isinstance(clip, np.ndarray):
            clip = frames_clip(clip)
        return self.run(clip)
