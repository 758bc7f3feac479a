"""The Ray job (``run.runner=ray``, the default): the run as a Ray Data streaming pipeline.

Same stages, same output as the in-process run (``preprocess.pipeline``): decode in CPU
tasks, one video per task, streaming its clips as they are cut (memory stays bounded on long
videos; Ray Data's backpressure holds decoding back when the model stages fall behind);
pose, flow and depth in actor pools that load their model once per actor; geometry and
encoding in CPU tasks; and the shard writing in the driver, which regroups each video's
clips (they arrive in any order, from any actor) and commits the video through the same
staged, whole-shard writer as the local run once all of them are there.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from preprocess.clip import Clip, StageError, VideoInfo, video_id_for
from preprocess.config import PreprocessConfig, RunConfig
from preprocess.deadline import video_deadline, within_deadline
from preprocess.pipeline import (
    STAGES,
    Extractors,
    RunSummary,
    check_same_config,
    decoded_clips,
    failed_row,
    open_output,
    output_root,
    probe,
)
from preprocess.stages import (
    DepthStage,
    EncodedClip,
    FlowStage,
    PoseStage,
    encode_stage,
    geometry_stage,
    video_row_ok,
)
from shards.schema import ClipRow
from shards.staging import VideoStaging
from shards.writer import ShardWriter

log = logging.getLogger(__name__)

MODEL_STAGES: dict[str, Callable[[PreprocessConfig], Callable[[Clip], Clip]]] = {
    "pose": PoseStage,
    "flow": FlowStage,
    "depth": DepthStage,
}


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


def _row(item: Item) -> dict[str, Any]:
    return {"video_id": item.video_id, "item": item}


# --- the pipeline --------------------------------------------------------------------------


def build_dataset(sources: list[str], cfg: PreprocessConfig, run_meta: dict[str, Any]) -> Any:
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
    # pose: 1 clip -> 1 clip; actor pool, model loaded once per actor (GPU fraction optional)
    ds = _model_stage(ds, PoseActor, cfg, r.pose_actors, r.pose_cpus, r.pose_gpus)
    # flow: 1 clip -> 1 clip; actor pool
    ds = _model_stage(ds, FlowActor, cfg, r.flow_actors, r.flow_cpus, r.flow_gpus)
    # depth: 1 clip -> 1 clip; actor pool
    ds = _model_stage(ds, DepthActor, cfg, r.depth_actors, r.depth_cpus, r.depth_gpus)
    # geometry + stats + encode: 1 clip -> 1 encoded sample (frames dropped); CPU task
    ds = ds.map(
        finish_clip,
        fn_kwargs={"cfg": cfg, "run_meta": run_meta},
        num_cpus=r.geometry_cpus,
        max_retries=r.max_retries,
    )
    # shard writing: in the driver (VideoAssembler), whole videos committed as they complete
    return ds


def _model_stage(
    ds: Any, actor: type[ModelActor], cfg: PreprocessConfig, actors: int, cpus: float, gpus: float
) -> Any:
    if gpus > 0 and not ray.cluster_resources().get("GPU"):
        # An actor asking for a GPU the cluster does not have would wait forever; a GPU preset
        # (paper.yaml) still runs, slowly, on a CPU-only cluster.
        log.warning(
            "run.%s_gpus=%g but the cluster has no GPU: the %s actors run on CPU",
            actor.name,
            gpus,
            actor.name,
        )
        gpus = 0.0
    return ds.map_batches(
        actor,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.run.clips_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
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
    """One model stage (``pose`` | ``flow`` | ``depth``) in a Ray actor: loaded once."""

    name = ""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.stage: Callable[[Clip], Clip] = MODEL_STAGES[self.name](cfg)
        self.limit = cfg.run.video_timeout_s

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for item in batch["item"]:
            if item.kind != "clip" or item.error is not None:
                continue
            try:
                item.clip = within_deadline(
                    self.name, item.deadline, self.stage, item.clip, timeout_s=self.limit
                )
            except StageError as err:
                item.fail(err)
        return batch


class PoseActor(ModelActor):
    name = "pose"


class FlowActor(ModelActor):
    name = "flow"


class DepthActor(ModelActor):
    name = "depth"


def finish_clip(
    row: dict[str, Any], cfg: PreprocessConfig, run_meta: dict[str, Any]
) -> dict[str, Any]:
    """Geometry, statistics and encoding of one clip; only the encoded sample goes on."""
    item: Item = row["item"]
    if item.kind != "clip" or item.error is not None:
        return row
    limit = cfg.run.video_timeout_s
    try:
        clip = within_deadline(
            "geometry", item.deadline, geometry_stage, item.clip, cfg, timeout_s=limit
        )
        item.encoded = within_deadline(
            "encode", item.deadline, encode_stage, clip, cfg, run_meta, timeout_s=limit
        )
        item.clip = None
    except StageError as err:
        item.fail(err)
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
    expected: int | None = None
    info: VideoInfo | None = None
    error: StageError | None = None

    def note_error(self, err: StageError) -> None:
        """Keep the failure of the earliest stage (the one a local run would have reported)."""
        if self.error is None or _stage_rank(err.stage) < _stage_rank(self.error.stage):
            self.error = err


def _stage_rank(name: str) -> int:
    return STAGES.index(name) if name in STAGES else len(STAGES)


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
        if video.expected is not None and len(video.seen) >= video.expected:
            self._finish(item.video_id, video)

    def _finish(self, video_id: str, video: _Video) -> None:
        del self.open[video_id]
        self.finished.add(video_id)
        seconds = time.time() - video.started
        if video.error is None and video.info is not None:
            row = video_row_ok(video.info, video.rows, seconds)
            video.staging.commit(row)
            self.summary.add(row, video.rows)
            log.info("done %s: %s, %d clips", video.source, row.status, len(video.rows))
            return
        err = video.error or StageError("decode", "the video ended without its probe")
        video.staging.discard()
        log.warning("failed %s at %s: %s", video.source, err.stage, err.message)
        row = failed_row(video.source, err, seconds)
        self.writer.add_video_row(row)
        self.summary.add(row, [])

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
    if not allow_config_change:
        check_same_config(out, cfg)  # before starting anything: a quick, clear refusal
    started_here = connect(cfg.run)
    try:
        backends = ray.get(_backend_identity.remote(cfg))
        plan = open_output(inputs, out, cfg, backends, allow_config_change=allow_config_change)
        summary = RunSummary(skipped_done=plan.skipped_done)
        if plan.todo:
            with ShardWriter(out, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
                assembler = VideoAssembler(writer, summary)
                for row in build_dataset(plan.todo, cfg, plan.run_meta).iter_rows():
                    assembler.add(row["item"])
                assembler.close()
    finally:
        if started_here:
            ray.shutdown()
    summary.wall_seconds = time.perf_counter() - start
    return summary


@ray.remote(num_cpus=1)
def _backend_identity(cfg: PreprocessConfig) -> dict[str, Any]:
    """Load every backend once on a worker: its identity, and any missing-weights error early."""
    return Extractors(cfg).identity()


def connect(r: RunConfig) -> bool:
    """Join the configured cluster (``run.address``, else ``RAY_ADDRESS``), or start a local
    instance sized so that every actor and one task of each kind fit; True if started here."""
    needed = cpus_needed(r)
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


def cpus_needed(r: RunConfig) -> float:
    """CPUs that every actor plus one decode and one geometry task hold at once."""
    return (
        r.decode_cpus
        + r.geometry_cpus
        + r.pose_actors * r.pose_cpus
        + r.flow_actors * r.flow_cpus
        + r.depth_actors * r.depth_cpus
    )
