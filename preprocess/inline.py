"""The inline layout (``run.extractors=inline``, the default on a cluster without GPUs): every
stage of a video, and its writing, in one worker.

Each actor of the Ray job's inline pool (``preprocess.ray_job``: ``run.inline_actors`` of
them, ``run.inline_cpus`` each) is an :class:`InlineWorker`: it loads every model once, then
takes one video at a time, decodes it clip by clip, runs each clip through the whole stage
table (``preprocess.stages.STAGES``) and stages it in its own writer
(``preprocess.writers.VideoWriter``: its own shard prefix ``shard-wNNN``), which commits the
video whole or records its ``failed`` row. No frame and no sample crosses the object store:
the driver receives a report of a few hundred bytes per video. On CPU nodes this is the
cheapest layout: a stage is a function call, not a hop between processes (docs/cluster.md,
"Layouts"). A worker that dies takes its unpublished videos with it; the driver runs them
again (``preprocess.video_passes``). Nothing here imports Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from preprocess.config import PreprocessConfig
from preprocess.devices import apply_cpu_threads
from preprocess.runner import backend_identities, build_steps, load_models
from preprocess.stages import ModelStage, RunMeta, Stage, StageFn
from preprocess.transit import video_items
from preprocess.writers import VideoReport, VideoWriter


class InlineWorker:
    """Every stage of a video and its writing in one object (one actor of the inline pool).

    :meth:`load` loads the models (the job asks the first worker for the backends' identity
    before it opens the output; a missing weight file raises there, by name); the CPU stages
    and the writer are built at the first video, once the output is open. :meth:`close`
    publishes the open shard at the end of a pass.
    """

    def __init__(self, cfg: PreprocessConfig, table: Sequence[Stage], out: str, index: int) -> None:
        self.cfg, self.table, self.out, self.index = cfg, tuple(table), out, index
        self.models: dict[str, ModelStage] | None = None
        self.steps: list[tuple[Stage, StageFn]] | None = None
        self.writer: VideoWriter | None = None

    def load(self) -> dict[str, Any]:
        """Load every model (once); the identity of each backend (``OUT/backends.json``)."""
        if self.models is None:
            apply_cpu_threads()  # OpenCV on the actor's CPUs, as the codecs
            self.models = load_models(self.cfg, self.table)
        return backend_identities(self.models)

    def video(self, source: str, run_meta: RunMeta) -> list[VideoReport]:
        """One video through every stage into this worker's shards: its report (none when it
        was already in the output)."""
        if self.steps is None:
            self.load()
            assert self.models is not None
            self.steps = build_steps(self.cfg, run_meta, self.models, self.table)
        if self.writer is None:
            self.writer = VideoWriter(self.out, self.cfg.shards, self.index)
        reports: list[VideoReport] = []
        for item in video_items(source, self.cfg, self.steps, last=True):
            reports += self.writer.add(item)
        return reports

    def close(self) -> list[str]:
        """Publish the open shard and the pending video rows; names of the shards written. The
        next video opens a new writer."""
        writer, self.writer = self.writer, None
        return writer.close() if writer is not None else []
