"""The Ray job (``run.runner=ray``, the default): the run as a Ray Data streaming pipeline.

Same stage table, same output as the in-process run (``preprocess.pipeline``): decode in CPU
tasks, one video per task, streaming its clips as they are cut (memory stays bounded on long
videos; Ray Data's backpressure holds decoding back when the model stages fall behind); then
the stages of ``preprocess.stages.STAGES`` in order, each model stage an actor pool that
loads its model once per actor, each run of consecutive CPU stages one task per clip
(geometry + encode by default); and the shard writing in the driver, which regroups each
video's clips (they arrive in any order, from any actor) and commits the video through the
same staged, whole-shard writer as the local run once all of them are there. The output's
bookkeeping is ``preprocess.runner``'s.

Everything between stages is one row per clip, ``{"video_id", "item": Item}``, plus one
``end`` row per video that says how many clips it has and whether decoding failed. A stage
that fails on a clip (or runs past the video's deadline) turns the item into an error that
the later stages pass through; the driver then discards the video's staged clips and
records a ``failed`` row. ``python -m preprocess`` imports this module only for this runner:
importing ``preprocess`` never imports Ray.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from preprocess import stages
from preprocess.clip import Clip, EncodedClip, StageError, VideoInfo, video_id_for
from preprocess.config import PreprocessConfig, RunConfig
from preprocess.deadline import video_deadline
from preprocess.runner import (
    RunSummary,
    backend_identities,
    check_same_config,
    failed_row,
    load_models,
    open_output,
    output_root,
    video_row_ok,
)
from preprocess.stages import (
    DECODE,
    RunMeta,
    Stage,
    StageFn,
    decoded_clips,
    finished,
    probe,
    run_stages,
    stage_rank,
)
from shards.schema import ClipRow
from shards.staging import VideoStaging
from shards.writer import ShardWriter

log = logging.getLogger(__name__)


@dataclass
class Item:
    """What travels between the stages: one clip of a video, or the video's end marker."""

    kind: str
    """``clip`` | ``end``."""
    video_id: str
    source: str
    started: float
    """Epoch seconds at which the video's decode task started."""
    deadline: float | None = None
    clip: Clip | None = None
    encoded: EncodedClip | None = None
    info: VideoInfo | None = None
    """``end``: the probed video (None when probing failed)."""
    index: int = 0
    """``clip``: the clip's position in its video; ``end``: how many clips were emitted."""
    error: tuple[str, str] | None = None
    """(stage, message) of a failure (a StageError does not survive pickling as itself)."""

    def fail(self, err: StageError) -> None:
        """Turn the item into an error (its arrays are dropped: nothing of it is written)."""
        self.error, self.clip, self.encoded = (err.stage, err.message), None, None

    def advance(self, steps: Sequence[tuple[Stage, StageFn]], timeout_s: float, last: bool) -> None:
        """A clip through built stages; after the ``last`` ones only its encoded form goes on."""
        if self.kind != "clip" or self.error is not None or self.clip is None:
            return
        try:
            self.clip = run_stages(steps, self.clip, self.deadline, timeout_s)
            if last:
                self.encoded, self.clip = finished(self.clip), None
        except StageError as err:
            self.fail(err)


def _row(item: Item) -> dict[str, Any]:
    return {"video_id": item.video_id, "item": item}


# --- the pipeline --------------------------------------------------------------------------


def build_dataset(
    sources: list[str], cfg: PreprocessConfig, run_meta: RunMeta, table: Sequence[Stage]
) -> Any:
    """The Ray Data graph, top to bottom; consumed (and shards written) by :func:`run_ray`."""
    r = cfg.run
    # Retry bounds are Ray remote args: Ray 2.60 warns that these keyword arguments go away in
    # Ray 2.64 without naming a successor; revisit them when upgrading.
    # Items are Python objects: say so, rather than have Ray warn on every worker.
    ray.data.DataContext.get_current().enable_fallback_to_arrow_object_ext_type = True
    # discover (driver): 1 row per video, one block each so that every video is its own task
    ds: Any = ray.data.from_items(
        [{"source": s} for s in sources], override_num_blocks=len(sources)
    )
    # decode + split into clips: 1 video -> N clips + 1 end row; CPU task, clips streamed out
    ds = ds.flat_map(
        decode_video, fn_kwargs={"cfg": cfg}, num_cpus=r.decode_cpus, max_retries=r.max_retries
    )
    # the stage table, 1 clip -> 1 clip each: a model stage is an actor pool (model loaded
    # once per actor, GPU fraction optional), consecutive CPU stages one task per clip; after
    # the last stage only the encoded sample goes on (frames dropped)
    groups = stage_groups(table)
    for group in groups:
        last = group is groups[-1]
        if group[0].is_model:
            ds = _model_stage(ds, group[0], cfg, last)
        else:
            ds = ds.map(
                cpu_stages,
                fn_kwargs={"group": group, "cfg": cfg, "run_meta": run_meta, "last": last},
                num_cpus=max(s.resources(r).cpus for s in group),
                max_retries=r.max_retries,
            )
    # shard writing: in the driver (VideoAssembler), whole videos committed as they complete
    return ds


def stage_groups(table: Sequence[Stage]) -> list[tuple[Stage, ...]]:
    """The table as Ray operators: each model stage alone, consecutive CPU stages together."""
    groups: list[tuple[Stage, ...]] = []
    for s in table:
        if groups and not s.is_model and not groups[-1][0].is_model:
            groups[-1] = (*groups[-1], s)
        else:
            groups.append((s,))
    return groups


def _model_stage(ds: Any, entry: Stage, cfg: PreprocessConfig, last: bool) -> Any:
    res = entry.resources(cfg.run)
    gpus = res.gpus
    if gpus > 0 and not ray.cluster_resources().get("GPU"):
        # An actor asking for a GPU the cluster does not have would wait forever; a GPU preset
        # (paper.yaml) still runs, slowly, on a CPU-only cluster.
        log.warning(
            "the %s actors ask for %g GPU each but the cluster has no GPU: they run on CPU",
            entry.name,
            gpus,
        )
        gpus = 0.0
    # Named after the stage (PoseActor): Ray names the operator and its processes after it.
    actor = type(f"{entry.name.title().replace('_', '')}Actor", (ModelActor,), {})
    return ds.map_batches(
        actor,
        fn_constructor_kwargs={"entry": entry, "cfg": cfg, "last": last},
        batch_size=cfg.run.clips_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=res.actors),
        num_cpus=res.cpus,
        num_gpus=gpus,
        max_restarts=cfg.run.max_retries,  # Ray Data's default: unbounded
        max_task_retries=cfg.run.max_retries,
    )


def decode_video(row: dict[str, Any], cfg: PreprocessConfig) -> Iterator[dict[str, Any]]:
    """Probe one video and stream its clips, then its end row (with the error, if any)."""
    source = row["source"]
    started = time.time()
    deadline = video_deadline(cfg.run.video_timeout_s, started)
    head = Item("end", video_id_for(source), source, started, deadline)
    n = 0
    try:
        head.info = probe(source, cfg, deadline)
        for clip in decoded_clips(head.info, cfg, deadline):
            yield _row(Item("clip", head.video_id, source, started, deadline, clip, index=n))
            n += 1
    except StageError as err:
        head.fail(err)
    head.index = n
    yield _row(head)


class ModelActor:
    """One model stage in a Ray actor: its model loaded once, then a batch of items per call."""

    def __init__(self, entry: Stage, cfg: PreprocessConfig, last: bool) -> None:
        assert entry.model is not None, f"{entry.name} is not a model stage"
        self.steps = [(entry, entry.model(cfg))]
        self.limit, self.last = cfg.run.video_timeout_s, last

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for item in batch["item"]:
            item.advance(self.steps, self.limit, self.last)
        return batch


def cpu_stages(
    row: dict[str, Any],
    group: Sequence[Stage],
    cfg: PreprocessConfig,
    run_meta: RunMeta,
    last: bool,
) -> dict[str, Any]:
    """Consecutive CPU stages on one clip (built here: they are cheap to build)."""
    item: Item = row["item"]
    if item.kind == "clip" and item.error is None:
        steps = [(s, s.cpu(cfg, run_meta)) for s in group if s.cpu is not None]
        item.advance(steps, cfg.run.video_timeout_s, last)
    return row


# --- the driver: regroup clips per video, commit whole videos ------------------------------


@dataclass
class _Video:
    source: str
    started: float
    staging: VideoStaging
    seen: set[int] = field(default_factory=set)
    """Clip positions received (a retried task may emit a clip again)."""
    rows: list[ClipRow] = field(default_factory=list)
    times: list[dict[str, float]] = field(default_factory=list)
    """Stage times of each staged clip."""
    expected: int | None = None
    info: VideoInfo | None = None
    error: StageError | None = None

    def note_error(self, err: StageError) -> None:
        """Keep the failure of the earliest stage (the one a local run would have reported)."""
        if self.error is None or stage_rank(err.stage) < stage_rank(self.error.stage):
            self.error = err


class VideoAssembler:
    """Stages each video's encoded clips as they arrive; commits or fails it when complete."""

    def __init__(self, writer: ShardWriter, summary: RunSummary) -> None:
        self.writer = writer
        self.summary = summary
        self.open: dict[str, _Video] = {}
        self.finished: set[str] = set()

    def add(self, item: Item) -> None:
        if item.video_id in self.finished:  # re-emitted by a retried task: already written
            return
        video = self.open.get(item.video_id)
        if video is None:
            staging = self.writer.begin_video(item.video_id)
            video = self.open[item.video_id] = _Video(item.source, item.started, staging)
        if item.error is not None:
            video.note_error(StageError(*item.error))
        if item.kind == "end":
            video.expected, video.info = item.index, item.info
        elif item.index not in video.seen:
            video.seen.add(item.index)
            if item.encoded is not None and video.error is None:
                video.staging.add(item.encoded.fields, item.encoded.row)
                video.rows.append(item.encoded.row)
                video.times.append(item.encoded.seconds)
        if video.expected is not None and len(video.seen) >= video.expected:
            self._finish(item.video_id, video)

    def _finish(self, video_id: str, video: _Video) -> None:
        del self.open[video_id]
        self.finished.add(video_id)
        seconds = time.time() - video.started
        if video.error is None and video.info is not None:
            row = video_row_ok(video.info, video.rows, seconds)
            video.staging.commit(row)
            self.summary.add(row, video.times)
            log.info("done %s: %s, %d clips", video.source, row.status, len(video.rows))
            return
        err = video.error or StageError(DECODE, "the video ended without its probe")
        video.staging.discard()
        log.warning("failed %s at %s: %s", video.source, err.stage, err.message)
        row = failed_row(video.source, err, seconds)
        self.writer.add_video_row(row)
        self.summary.add(row)

    def close(self) -> None:
        """Videos still open when the stream ended lost rows: record them as failed."""
        for video_id, video in list(self.open.items()):
            video.note_error(StageError("job", "the stream ended before all its clips arrived"))
            video.expected = len(video.seen)
            self._finish(video_id, video)


# --- entry point ---------------------------------------------------------------------------


def run_ray(
    inputs: list[str],
    output: str | Path,
    cfg: PreprocessConfig,
    *,
    allow_config_change: bool = False,
) -> RunSummary:
    """Preprocess every input into ``output`` on Ray (a cluster, or a local instance)."""
    start = time.perf_counter()
    out = output_root(output)
    # Before starting anything: a quick, clear refusal.
    check_same_config(out, cfg, compare=not allow_config_change)
    table = stages.STAGES  # read once: the workers get these very stage objects
    started_here = connect(cfg.run, table)
    try:
        backends = ray.get(_backend_identity.remote(cfg, table))
        plan = open_output(inputs, out, cfg, backends, allow_config_change=allow_config_change)
        summary = RunSummary(skipped_done=plan.skipped_done)
        if plan.todo:
            with ShardWriter(out, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
                assembler = VideoAssembler(writer, summary)
                for row in build_dataset(plan.todo, cfg, plan.run_meta, table).iter_rows():
                    assembler.add(row["item"])
                assembler.close()
    finally:
        if started_here:
            ray.shutdown()
    summary.wall_seconds = time.perf_counter() - start
    return summary


@ray.remote(num_cpus=1)
def _backend_identity(cfg: PreprocessConfig, table: Sequence[Stage]) -> dict[str, Any]:
    """Load every model once on a worker: its identity, and any missing-weights error early."""
    return backend_identities(load_models(cfg, table))


def connect(r: RunConfig, table: Sequence[Stage] | None = None) -> bool:
    """Join the configured cluster (``run.address``, else ``RAY_ADDRESS``), or start a local
    instance sized so that every actor and one task of each kind fit; True if started here."""
    needed = cpus_needed(r, table)
    if ray.is_initialized():
        started = False
    elif address := r.address or os.environ.get("RAY_ADDRESS", ""):
        ray.init(address=address, log_to_driver=True)
        log.info("joined the Ray cluster at %s", address)
        started = True
    else:
        cpus = r.num_cpus or max(os.cpu_count() or 1, math.ceil(needed))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=True)
        log.info("started a local Ray instance with %d CPUs", cpus)
        started = True
    have = ray.cluster_resources()
    log.info("cluster resources: %s", {k: v for k, v in have.items() if k in ("CPU", "GPU")})
    if have.get("CPU", 0.0) < needed:
        log.warning(
            "the cluster has %g CPUs, the actors and one task of each kind need %g: the job "
            "waits until the cluster grows (lower run.*_actors or run.*_cpus to fit)",
            have.get("CPU", 0.0),
            needed,
        )
    return started


def cpus_needed(r: RunConfig, table: Sequence[Stage] | None = None) -> float:
    """CPUs that every actor plus one decode task and one task of each CPU group hold at once."""
    total = r.decode_cpus
    for group in stage_groups(stages.STAGES if table is None else table):
        res = [s.resources(r) for s in group]
        total += res[0].actors * res[0].cpus if group[0].is_model else max(x.cpus for x in res)
    return total
