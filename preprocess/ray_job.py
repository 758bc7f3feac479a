"""The Ray job (``run.runner=ray``, the default): the run on a Ray cluster (or a local instance).

Same stage table, same output as the in-process run (``preprocess.pipeline``), in one of
three layouts (``run.extractors``; docs/cluster.md, "Layouts"):

- ``inline`` (the default without GPUs): :class:`InlinePool`, plain Ray actors that each run
  every stage of a video and write it (``preprocess.inline.InlineWorker``); the driver hands
  out the videos and receives a small report per video. No frame crosses the object store.
- ``fused`` (the default with GPUs) and ``separate``: a Ray Data streaming pipeline
  (:func:`build_dataset`). Decode runs in CPU tasks, one video per task, streaming its clips
  as they are cut (memory stays bounded on long videos; Ray Data's backpressure holds decoding
  back when the model stages fall behind), each clip through the CPU stages that lead the
  table (encode: x264 of its frames) in that task; then the other stages in order: the model
  stages in one fused actor pool (``preprocess.fused``: every model on one device) or one
  pool per stage, each run of consecutive CPU stages one task per clip (geometry + pack by
  default). A clip's pixels travel only as far as the last stage that reads them
  (``Stage.reads_frames``): with the fused pool, one hop (decode -> extractors). The task that
  finishes a clip hands it to its video's writer actor (``preprocess.writers``:
  ``run.writers`` of them, one per node by default), which commits whole videos into its own
  shards; the driver receives a small report per finished video.

Rows between operators are ``preprocess.transit`` rows: the clip's frames a numpy column, the
rest pickled, plus one ``end`` row per video. A stage that fails on a clip (or runs past the
video's deadline) turns the item into an error that the later stages pass through; the
writer then discards the video's staged clips and records a ``failed`` row.

Lost work: Ray retries crashed tasks and restarts crashed actors (``run.max_retries``; an
inline actor is not restarted, its videos wait for the next pass); what Ray Data still raises
when a node is lost ends the pass, not the job. After each pass the
driver reads ``stats/videos`` and runs the videos not yet there again, up to
``run.max_retries`` more passes (the output is resumable per video), then records the rest as
failed at stage ``job``. ``python -m preprocess`` imports this module only for this runner:
importing ``preprocess`` never imports Ray.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.data.exceptions import UserCodeException
from ray.exceptions import ActorDiedError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tqdm import tqdm

from preprocess import stages
from preprocess.config import PreprocessConfig, RunConfig
from preprocess.devices import apply_cpu_threads
from preprocess.fused import FusedExtractors
from preprocess.inline import InlineWorker
from preprocess.runner import (
    RunSummary,
    backend_identities,
    check_same_config,
    load_models,
    open_output,
    output_root,
)
from preprocess.stages import Resources, RunMeta, Stage
from preprocess.transit import Item, batch_of, from_row, rows_of, to_row, video_items
from preprocess.video_passes import Passes
from preprocess.writers import VideoReport, VideoWriter, writer_for

log = logging.getLogger(__name__)
EXTRACTORS = ("auto", "inline", "fused", "separate")


# --- the pipeline --------------------------------------------------------------------------


def build_dataset(
    sources: list[str],
    cfg: PreprocessConfig,
    run_meta: RunMeta,
    table: Sequence[Stage],
    writers: Sequence[Any],
    mode: str = "separate",
) -> Any:
    """The Ray Data graph, top to bottom; its rows are the writers' reports (consumed by
    :func:`run_ray`)."""
    r = cfg.run
    # Retry bounds are Ray remote args: Ray 2.60 warns that these keyword arguments go away in
    # Ray 2.64 without naming a successor; revisit them when upgrading.
    # discover (driver): 1 row per video, one block each so that every video is its own task
    ds: Any = ray.data.from_items(
        [{"source": s} for s in sources], override_num_blocks=len(sources)
    )
    # decode + split into clips: 1 video -> N clips + 1 end row; CPU task, clips streamed out,
    # each through the CPU stages that lead the table (encode: the frames' x264) on its way
    lead, groups = split_lead(stage_groups(table, mode == "fused"))
    keep = frame_readers(groups)  # whether each operator's rows still carry the pixels
    ds = ds.flat_map(
        decode_video,
        fn_kwargs={"cfg": cfg, "run_meta": run_meta, "lead": lead, "keep_frames": keep[0]},
        num_cpus=r.decode_cpus,
        max_retries=r.max_retries,
    )
    # the rest of the stage table, 1 clip -> 1 clip each: model stages an actor pool each, or
    # together one fused pool (models loaded once per actor, GPU fraction optional),
    # consecutive CPU stages one task per clip; the pixels travel only as far as the last
    # stage that reads them; the last operator hands each finished item to its video's
    # writer (1 clip -> 1 report row, a few hundred bytes)
    for i, group in enumerate(groups):
        last = writers if i == len(groups) - 1 else None
        if group[0].is_model:
            ds = _model_stage(ds, group, cfg, last, keep[i + 1])
        else:
            kwargs = {"group": group, "cfg": cfg, "run_meta": run_meta, "writers": last}
            ds = ds.map(
                cpu_stages,
                fn_kwargs={**kwargs, "keep_frames": keep[i + 1]},
                num_cpus=group_resources(group, r).cpus,
                max_retries=r.max_retries,
            )
    return ds


def split_lead(
    groups: list[tuple[Stage, ...]],
) -> tuple[tuple[Stage, ...], list[tuple[Stage, ...]]]:
    """(the CPU stages that lead the table, the other operators): the leading ones run in the
    decode task, where the frames are (encode: their x264), not as an operator of their own
    (whose input would be one more hop of the pixels)."""
    if len(groups) > 1 and not groups[0][0].is_model:
        return groups[0], groups[1:]
    return (), groups


def frame_readers(groups: Sequence[Sequence[Stage]]) -> list[bool]:
    """``out[i]``: whether a stage of ``groups[i:]`` reads the frames, i.e. whether the rows
    into operator ``i`` (and so out of operator ``i - 1``, or of decoding for ``i = 0``) carry
    them; ``out[len(groups)]`` is False."""
    out = [False] * (len(groups) + 1)
    for i in range(len(groups) - 1, -1, -1):
        out[i] = out[i + 1] or any(s.reads_frames for s in groups[i])
    return out


def stage_groups(table: Sequence[Stage], fused: bool = False) -> list[tuple[Stage, ...]]:
    """The table as Ray operators: consecutive CPU stages together; consecutive model stages
    together when ``fused``, else each alone."""
    groups: list[tuple[Stage, ...]] = []
    for s in table:
        if groups and s.is_model == groups[-1][0].is_model and (fused or not s.is_model):
            groups[-1] = (*groups[-1], s)
        else:
            groups.append((s,))
    return groups


def group_resources(group: Sequence[Stage], r: RunConfig) -> Resources:
    """One worker of an operator: a CPU task (the largest of its stages), a model actor, or a
    fused actor (the sum of its stages' CPUs and GPUs, at most one GPU; ``run.fused_actors``,
    else the largest pool of its stages)."""
    res = [s.resources(r) for s in group]
    if not group[0].is_model:
        return Resources(max(x.cpus for x in res))
    if len(res) == 1:
        return res[0]
    actors = r.fused_actors or max(x.actors for x in res)
    return Resources(sum(x.cpus for x in res), min(1.0, sum(x.gpus for x in res)), actors)


def _model_stage(
    ds: Any,
    group: Sequence[Stage],
    cfg: PreprocessConfig,
    writers: Sequence[Any] | None,
    keep_frames: bool,
) -> Any:
    res = group_resources(group, cfg.run)
    gpus = res.gpus
    names = "+".join(s.name for s in group)
    if gpus > 0 and not ray.cluster_resources().get("GPU"):
        # An actor asking for a GPU the cluster does not have would wait forever; a GPU preset
        # (paper.yaml) still runs, slowly, on a CPU-only cluster.
        log.warning(
            "the %s actors ask for %g GPU each but the cluster has no GPU: they run on CPU",
            names,
            gpus,
        )
        gpus = 0.0
    # Named after the stages (PoseActor, PoseFlowDepthActor): Ray names the operator after it.
    title = "".join(s.name.title().replace("_", "") for s in group)
    actor = type(f"{title}Actor", (ModelActor,), {})
    return ds.map_batches(
        actor,
        fn_constructor_kwargs={
            "group": tuple(group),
            "cfg": cfg,
            "writers": writers,
            "keep_frames": keep_frames,
        },
        batch_size=cfg.run.clips_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=res.actors),
        num_cpus=res.cpus,
        num_gpus=gpus,
        max_restarts=cfg.run.max_retries,  # Ray Data's default: unbounded
        max_task_retries=cfg.run.max_retries,
    )


def decode_video(
    row: dict[str, Any],
    cfg: PreprocessConfig,
    run_meta: RunMeta,
    lead: Sequence[Stage],
    keep_frames: bool,
) -> Iterator[dict[str, Any]]:
    """Probe one video and stream its clips, each through the ``lead`` CPU stages, then its
    end row (with the error, if any)."""
    apply_cpu_threads()  # OpenCV on the task's CPUs, as the codecs
    steps = [(s, s.cpu(cfg, run_meta)) for s in lead if s.cpu is not None]
    for item in video_items(row["source"], cfg, steps, last=False):
        yield to_row(item, keep_frames)


class ModelActor:
    """Model stages in a Ray actor (one, or several fused): models loaded once, then a batch
    of rows per call; the last operator hands its items to the writers."""

    def __init__(
        self,
        group: Sequence[Stage],
        cfg: PreprocessConfig,
        writers: Sequence[Any] | None,
        keep_frames: bool,
    ) -> None:
        apply_cpu_threads()  # OpenCV on the actor's CPUs, as the codecs
        self.extractors = FusedExtractors(cfg, group)
        self.limit, self.writers, self.keep_frames = cfg.run.video_timeout_s, writers, keep_frames

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [from_row(row) for row in rows_of(batch)]
        for item in items:
            item.advance(self.extractors.steps, self.limit, last=self.writers is not None)
        if self.writers is not None:
            done = [deliver(item, self.writers) for item in items]
            return {k: np.array([d[k] for d in done], dtype=object) for k in ("video_id", "report")}
        return batch_of([to_row(item, self.keep_frames) for item in items])


def cpu_stages(
    row: dict[str, Any],
    group: Sequence[Stage],
    cfg: PreprocessConfig,
    run_meta: RunMeta,
    writers: Sequence[Any] | None,
    keep_frames: bool,
) -> dict[str, Any]:
    """Consecutive CPU stages on one clip (built here: they are cheap to build)."""
    item = from_row(row)
    if item.kind == "clip" and item.error is None:
        apply_cpu_threads()
        steps = [(s, s.cpu(cfg, run_meta)) for s in group if s.cpu is not None]
        item.advance(steps, cfg.run.video_timeout_s, last=writers is not None)
    return to_row(item, keep_frames) if writers is None else deliver(item, writers)


def deliver(item: Item, writers: Sequence[Any]) -> dict[str, Any]:
    """Hand a finished item to its video's writer; the row for the driver: the reports of the
    videos it finished (pickled), no sample bytes.

    A dead writer (its node lost) passes its videos to the next live one; a video whose items
    ended up with two writers is committed by neither (each lacks clips) and runs again in
    the next pass, like every video a lost writer had staged."""
    item.store_bytes += item.encoded_bytes()
    first = writer_for(item.video_id, len(writers))
    reports: list[VideoReport] = []
    for k in range(len(writers)):
        writer = writers[(first + k) % len(writers)]
        try:
            reports = ray.get(writer.add.remote(item))
            break
        except ActorDiedError:
            continue
        except RayError as exc:  # unavailable: the call may or may not have run
            log.warning("writer lost for %s (%s): the video runs again", item.source, exc)
            break
    return {"video_id": item.video_id, "report": pickle.dumps(reports)}


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
    if cfg.run.extractors not in EXTRACTORS:
        raise ValueError(f"run.extractors={cfg.run.extractors!r}: use one of {EXTRACTORS}")
    # Before starting anything: a quick, clear refusal.
    check_same_config(out, cfg, compare=not allow_config_change)
    table = stages.STAGES  # read once: the workers get these very stage objects
    started_here = connect(cfg.run, table)
    pool: InlinePool | None = None
    try:
        mode = extractors_mode(cfg.run)
        log.info("layout: %s (run.extractors=%s)", MODE_TEXT[mode], cfg.run.extractors)
        # inline: every actor loads the models, and the first one ready names the backends;
        # else one task loads them to name them
        if mode == "inline":
            pool = InlinePool(out, cfg, table)
            backends = pool.backends()
        else:
            backends = ray.get(_backend_identity.remote(cfg, table))
        plan = open_output(inputs, out, cfg, backends, allow_config_change=allow_config_change)
        passes = Passes(out, cfg, plan.todo)
        while passes.todo and passes.next_pass():
            if pool is not None:
                pool.run_pass(passes, plan.run_meta)
                continue
            writers = start_writers(out, cfg)
            try:
                dataset = build_dataset(passes.todo, cfg, plan.run_meta, table, writers, mode)
                for row in dataset.iter_rows():
                    passes.received(row["report"], len(row["video_id"]))
            except Exception as exc:
                if not lost_work(exc):
                    raise
                log.warning("the pass ended early, Ray lost work: %s: %s", type(exc).__name__, exc)
            finally:
                stop_writers(writers)
        summary = passes.finish(skipped_done=plan.skipped_done)
    finally:
        if pool is not None:
            pool.stop()
        if started_here:
            ray.shutdown()
    summary.wall_seconds = time.perf_counter() - start
    return summary


class InlinePool:
    """The inline layout's actors (``preprocess.inline.InlineWorker``, ``run.inline_actors``
    of them, spread over the nodes) and the driver's side of a pass over them.

    Each actor holds at most ``VIDEOS_IN_FLIGHT`` videos (the next one waits in its queue, so
    it never idles on the driver); the driver blocks on the first answer, records it and
    hands that actor the next video. Ray Data is not used here: with every stage in one
    actor there is nothing to stream between operators, and its executor would cost the
    driver a tenth of a core or more and its own actors, and a map function has no hook at
    the end of the stream to publish its last shard. An actor that is lost (its node, its
    process) is not restarted by Ray: its videos not yet published run again in the next
    pass, on a fresh actor in its place, while the others go on with the rest of this one.
    """

    def __init__(self, out: str, cfg: PreprocessConfig, table: Sequence[Stage]) -> None:
        self.out, self.cfg, self.table = out, cfg, tuple(table)
        self.actors = [self._start(k) for k in range(inline_actors(cfg.run))]
        self.lost: set[int] = set()
        log.info("%d inline actors, %g CPUs each", len(self.actors), cfg.run.inline_cpus)

    def _start(self, index: int) -> Any:
        options = {
            "num_cpus": self.cfg.run.inline_cpus,
            "max_restarts": 0,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
        }
        return InlineActor.options(**options).remote(self.cfg, self.table, self.out, index)

    def backends(self) -> dict[str, Any]:
        """Every actor loads its models; the backends' identity from the first one done (its
        error, a missing weight file for one, raises here)."""
        loads = [actor.load.remote() for actor in self.actors]
        ready, _ = ray.wait(loads, num_returns=1)
        identity: dict[str, Any] = ray.get(ready[0])
        return identity

    def run_pass(self, passes: Passes, run_meta: RunMeta) -> None:
        """Every video of ``passes.todo`` to the actors; the reports into ``passes``; at the
        end each live actor publishes its open shard."""
        for k in sorted(self.lost):  # lost in an earlier pass: a fresh actor in its place
            self.actors[k] = self._start(k)
        self.lost.clear()
        todo = deque(passes.todo)
        total = len(todo)
        running: dict[Any, tuple[int, str]] = {}

        def give(k: int) -> None:
            if todo and k not in self.lost:
                source = todo.popleft()
                running[self.actors[k].video.remote(source, run_meta)] = (k, source)

        for _ in range(VIDEOS_IN_FLIGHT):  # one video to each actor first, then a second
            for k in range(len(self.actors)):
                give(k)
        with tqdm(total=total, unit="video", desc=f"pass {passes.passes}") as bar:
            while running:
                ray.wait(list(running), num_returns=1)  # blocks: no polling
                ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
                for ref in ready:
                    k, source = running.pop(ref)
                    try:
                        reports: list[VideoReport] = ray.get(ref)
                    except Exception as exc:
                        if not lost_work(exc):
                            raise
                        log.warning("inline actor %d lost with %s: %s", k, source, exc)
                        self.lost.add(k)
                        continue
                    passes.add(reports, len(pickle.dumps(reports)))
                    bar.update(1)
                    give(k)
        self._close()

    def stop(self) -> None:
        """End every actor (they hold CPUs on a cluster that outlives the job)."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)

    def _close(self) -> None:
        """Each live actor publishes its open shard and pending rows (a lost one: nothing)."""
        live = [k for k in range(len(self.actors)) if k not in self.lost]
        for k, ref in [(k, self.actors[k].close.remote()) for k in live]:
            try:
                ray.get(ref)
            except Exception as exc:
                if not lost_work(exc):
                    raise
                log.warning(
                    "inline actor %d was lost: its unpublished videos run again (%s)", k, exc
                )
                self.lost.add(k)


def lost_work(exc: BaseException) -> bool:
    """Whether Ray lost a worker, an actor, a node or an object (the videos can run again),
    rather than our code raising (a bug: not retried)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RayTaskError):
            seen = seen.cause if isinstance(seen.cause, BaseException) else seen.__cause__
            continue
        if isinstance(seen, RayError) and not isinstance(seen, UserCodeException):
            return True
        seen = seen.__cause__
    return False


MODE_TEXT = {
    "inline": "every stage of a video in one actor",
    "fused": "one fused actor pool",
    "separate": "a pool per stage",
}


def extractors_mode(r: RunConfig) -> str:
    """``run.extractors`` resolved: ``auto`` is ``fused`` on a cluster with GPUs, ``inline``
    without."""
    if r.extractors == "auto":
        return "fused" if ray.cluster_resources().get("GPU") else "inline"
    return r.extractors


def inline_actors(r: RunConfig) -> int:
    """Actors of the inline pool: ``run.inline_actors``, else as many as the cluster's CPUs
    hold at ``run.inline_cpus`` each."""
    if r.inline_actors:
        return r.inline_actors
    return max(1, int(ray.cluster_resources().get("CPU", 1.0) // r.inline_cpus))


WriterActor = ray.remote(VideoWriter)
InlineActor = ray.remote(InlineWorker)
VIDEOS_IN_FLIGHT = 2
"""Videos handed to an inline actor at a time (one running, one waiting in its queue)."""


def start_writers(out: str, cfg: PreprocessConfig) -> list[Any]:
    """The pass's writer actors: ``run.writers``, or one per node with CPUs, spread over
    them. Each holds no CPU (it only moves bytes) and is restarted on its node if it crashes;
    when its node is lost it is gone (its videos go to the next writer, see :func:`deliver`)."""
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU"))
    count = cfg.run.writers or max(1, len(nodes))
    writers = []
    for i in range(count):
        where: Any = "SPREAD"
        if nodes:
            where = NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False)
        options = {"num_cpus": 0, "max_restarts": cfg.run.max_retries, "max_task_retries": 0}
        writers.append(
            WriterActor.options(scheduling_strategy=where, **options).remote(out, cfg.shards, i)
        )
    log.info("%d writer actors", count)
    return writers


def stop_writers(writers: Sequence[Any]) -> None:
    """Publish each writer's open shard and pending rows, then end it (a lost one: nothing)."""
    for i, writer in enumerate(writers):
        try:
            ray.get(writer.close.remote())
        except RayError as exc:
            log.warning("writer %d was lost: its unpublished videos run again (%s)", i, exc)
        ray.kill(writer, no_restart=True)


@ray.remote(num_cpus=1)
def _backend_identity(cfg: PreprocessConfig, table: Sequence[Stage]) -> dict[str, Any]:
    """Load every model once on a worker: its identity, and any missing-weights error early."""
    return backend_identities(load_models(cfg, table))


def connect(r: RunConfig, table: Sequence[Stage] | None = None) -> bool:
    """Join the configured cluster (``run.address``, else ``RAY_ADDRESS``), or start a local
    instance sized so that every actor and one task of each kind fit (the machine's cores at
    least); True if started here."""
    if ray.is_initialized():
        started = False
    elif address := r.address or os.environ.get("RAY_ADDRESS", ""):
        ray.init(address=address, log_to_driver=True)
        log.info("joined the Ray cluster at %s", address)
        started = True
    else:
        needed = cpus_needed(r, table, local_mode(r))
        cpus = r.num_cpus or max(os.cpu_count() or 1, math.ceil(needed))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=True)
        log.info("started a local Ray instance with %d CPUs", cpus)
        started = True
    have = ray.cluster_resources()
    log.info("cluster resources: %s", {k: v for k, v in have.items() if k in ("CPU", "GPU")})
    needed = cpus_needed(r, table, extractors_mode(r))
    if have.get("CPU", 0.0) < needed:
        log.warning(
            "the cluster has %g CPUs, the actors and one task of each kind need %g: the job "
            "waits until the cluster grows (lower run.*_actors or run.*_cpus to fit)",
            have.get("CPU", 0.0),
            needed,
        )
    return started


def local_mode(r: RunConfig) -> str:
    """The layout :func:`extractors_mode` will choose on a local instance started here (for
    sizing it): ``auto`` resolved with Ray's own count of this machine's GPUs."""
    if r.extractors != "auto":
        return r.extractors
    from ray._private.accelerators import get_accelerator_manager_for_resource

    manager = get_accelerator_manager_for_resource("GPU")
    gpus = int(manager.get_current_node_num_accelerators()) if manager else 0
    return "fused" if gpus else "inline"


def cpus_needed(
    r: RunConfig, table: Sequence[Stage] | None = None, mode: str = "separate"
) -> float:
    """CPUs that every actor plus one decode task (with its leading CPU stages) and one task
    of each other CPU group hold at once (writers hold none); ``inline``: its actors."""
    if mode == "inline":
        return max(1, r.inline_actors) * r.inline_cpus
    total = r.decode_cpus
    table = stages.STAGES if table is None else table
    _, groups = split_lead(stage_groups(table, mode == "fused"))
    for group in groups:
        res = group_resources(group, r)
        total += res.actors * res.cpus if group[0].is_model else res.cpus
    return total
