"""The in-process run (``run.runner=local``): every video through ``preprocess.stages``.

A video is one transaction: its clips are staged as they are produced and committed to the
shards only when the whole video succeeded. A failure at any stage discards what was staged
and records a ``failed`` row with the stage and the message; the run goes on.

The Ray job (``preprocess.ray_job``) is the same run spread over a cluster: it shares this
module's output bookkeeping (``open_output``: config and model identity checks, resume), the
decode loop (``decoded_clips``), the per-video deadline and the summary.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from preprocess.clip import Clip, StageError, VideoInfo, stage, video_id_for
from preprocess.config import PreprocessConfig
from preprocess.deadline import video_deadline, within_deadline
from preprocess.decode import iter_clips, probe_video
from preprocess.discover import discover
from preprocess.stages import (
    DepthStage,
    EncodedClip,
    FlowStage,
    PoseStage,
    encode_stage,
    geometry_stage,
    video_row_ok,
)
from preprocess.storage import make_dirs, read_text, uri_join, write_text
from shards.config import config_to_dict, dump_config
from shards.reader import is_remote, read_videos
from shards.schema import CONFIG_FILE, ClipRow, VideoRow
from shards.writer import ShardWriter, remove_leftovers

log = logging.getLogger(__name__)

STAGES = ("decode", "pose", "flow", "depth", "geometry", "encode")
BACKENDS_FILE = "backends.json"
"""``OUT/backends.json``: name, model path and weights sha256 of each backend of the output,
compared on resume like ``OUT/config.yaml``."""
RUN_SECTION = "run."
"""Config keys that change how the job runs, never what it writes: not compared on resume."""


@dataclass
class RunSummary:
    """What a run did: videos by status, failures, and per-stage throughput."""

    status: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, stage, message) of each failed video."""
    clips: int = 0
    frames: int = 0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_seconds: float = 0.0
    skipped_done: int = 0
    """Videos already finished in an earlier run on the same output."""

    def add(self, row: VideoRow, clip_rows: list[ClipRow]) -> None:
        self.status[row.status] += 1
        if row.status == "failed":
            self.failures.append((row.source, row.error_stage or "?", row.error or ""))
        self.clips += len(clip_rows)
        self.frames += row.n_frames
        for r in clip_rows:
            for name in STAGES:
                self.stage_seconds[name] += getattr(r, f"seconds_{name}")

    def format(self) -> str:
        lines = [
            f"videos: {dict(self.status)} (+{self.skipped_done} already done), "
            f"clips: {self.clips}, frames: {self.frames}, wall: {self.wall_seconds:.1f} s",
            "frames/s per stage: "
            + ", ".join(
                f"{n} {self.frames / s:.1f}" if s >= 0.01 else f"{n} (< 10 ms in all)"
                for n, s in self.stage_seconds.items()
            ),
        ]
        lines += [f"failed at {stg}: {n} x {msg}" for (stg, msg), n in self.reasons().items()]
        return "\n".join(lines)

    def reasons(self) -> dict[tuple[str, str], int]:
        """Failed videos by (stage, reason): the message up to its first colon."""
        return dict(
            Counter((stg, msg.split(":")[0]) for _, stg, msg in self.failures).most_common()
        )


class Extractors:
    """The model stages of a run, each loaded once."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.pose = PoseStage(cfg)
        self.flow = FlowStage(cfg)
        self.depth = DepthStage(cfg)

    def identity(self) -> dict[str, Any]:
        return {
            "pose": self.pose.backend.identity(),
            "flow": self.flow.backend.identity(),
            "depth": self.depth.backend.identity(),
        }


def output_root(output: str | Path) -> str:
    """The output as the writer and readers name it: an absolute local path, or the URI."""
    return str(output) if is_remote(output) else str(Path(output).resolve())


@dataclass
class OutputPlan:
    """What a run on an output has to do, after the config and model checks."""

    todo: list[str]
    """Sources still to process, sorted."""
    skipped_done: int
    run_meta: dict[str, Any]
    """Every clip's config and backends metadata."""


def open_output(
    inputs: list[str],
    output: str,
    cfg: PreprocessConfig,
    backends: dict[str, Any],
    *,
    allow_config_change: bool = False,
) -> OutputPlan:
    """Check ``output`` against this run's config and backends, record them, list the work.

    Re-running on the same output skips the videos it already finished; doing so with a
    different config or different model weights is refused unless ``allow_config_change``.
    """
    make_dirs(output)
    remove_leftovers(output)  # tmp and staging files of a killed earlier run
    if not allow_config_change:
        check_same_config(output, cfg, backends)
    sources = discover(inputs)
    done = finished_sources(output)
    todo = [s for s in sources if s not in done]
    log.info("%d inputs, %d already done, %d to process", len(sources), len(done), len(todo))
    write_text(uri_join(output, CONFIG_FILE), dump_config(cfg))
    write_text(uri_join(output, BACKENDS_FILE), json.dumps(backends, indent=2, sort_keys=True))
    run_meta = {"config": config_to_dict(cfg), "backends": backends}
    return OutputPlan(todo, len(sources) - len(todo), run_meta)


def run(
    inputs: list[str],
    output: str | Path,
    cfg: PreprocessConfig,
    *,
    allow_config_change: bool = False,
) -> RunSummary:
    """Preprocess every input video into ``output`` (shards + Parquet statistics), in process.

    Re-running on the same output skips the videos it already finished; doing so with a
    different config is refused unless ``allow_config_change``.
    """
    start = time.perf_counter()
    out = output_root(output)
    if not allow_config_change:
        check_same_config(out, cfg)  # before loading any model: a quick, clear refusal
    extractors = Extractors(cfg)
    plan = open_output(
        inputs, out, cfg, extractors.identity(), allow_config_change=allow_config_change
    )
    summary = RunSummary(skipped_done=plan.skipped_done)
    with ShardWriter(out, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
        bar = tqdm(plan.todo, unit="video", desc="preprocess", dynamic_ncols=True)
        for source in bar:
            row, rows = process_video(source, cfg, extractors, writer, plan.run_meta)
            summary.add(row, rows)
            bar.set_postfix(
                clips=summary.clips, frames=summary.frames, failed=summary.status["failed"]
            )
    summary.wall_seconds = time.perf_counter() - start
    return summary


def process_video(
    source: str,
    cfg: PreprocessConfig,
    extractors: Extractors,
    writer: ShardWriter,
    run_meta: dict[str, Any],
) -> tuple[VideoRow, list[ClipRow]]:
    """Run one video through every stage; commit its clips or record why it failed."""
    start = time.perf_counter()
    deadline = video_deadline(cfg.run.video_timeout_s)
    staging = writer.begin_video(video_id_for(source))
    rows: list[ClipRow] = []
    try:
        info = probe(source, cfg, deadline)
        for encoded in _encoded_clips(info, cfg, extractors, run_meta, deadline):
            staging.add(encoded.fields, encoded.row)
            rows.append(encoded.row)
        row = video_row_ok(info, rows, time.perf_counter() - start)
        staging.commit(row)
    except StageError as err:
        staging.discard()
        log.warning("failed %s at %s: %s", source, err.stage, err.message)
        row = failed_row(source, err, time.perf_counter() - start)
        writer.add_video_row(row)
        return row, []
    except BaseException:
        staging.discard()
        raise
    return row, rows


def probe(source: str, cfg: PreprocessConfig, deadline: float | None) -> VideoInfo:
    """``decode.probe_video`` as the decode stage, within the video's deadline."""
    with stage("decode"):
        return within_deadline(
            "decode", deadline, probe_video, source, cfg.decode, timeout_s=cfg.run.video_timeout_s
        )


def decoded_clips(info: VideoInfo, cfg: PreprocessConfig, deadline: float | None) -> Iterator[Clip]:
    """The video's clips one at a time (bounded memory), each timed as the decode stage."""
    clips = iter_clips(info, cfg.decode)
    while True:
        seconds: dict[str, float] = {}
        with stage("decode", seconds):
            clip = within_deadline(
                "decode", deadline, next, clips, None, timeout_s=cfg.run.video_timeout_s
            )
        if clip is None:
            return
        clip.seconds.update(seconds)
        yield clip


def _encoded_clips(
    info: VideoInfo,
    cfg: PreprocessConfig,
    ex: Extractors,
    run_meta: dict[str, Any],
    deadline: float | None,
) -> Iterator[EncodedClip]:
    """Decode clip by clip and push each through the stages, each within the deadline."""
    limit = cfg.run.video_timeout_s
    for clip in decoded_clips(info, cfg, deadline):
        for name, model_stage in (("pose", ex.pose), ("flow", ex.flow), ("depth", ex.depth)):
            clip = within_deadline(name, deadline, model_stage, clip, timeout_s=limit)
        clip = within_deadline("geometry", deadline, geometry_stage, clip, cfg, timeout_s=limit)
        yield within_deadline(
            "encode", deadline, encode_stage, clip, cfg, run_meta, timeout_s=limit
        )


def failed_row(source: str, err: StageError, seconds: float) -> VideoRow:
    return VideoRow(
        video_id=video_id_for(source),
        source=source,
        status="failed",
        error_stage=err.stage,
        error=err.message,
        seconds=seconds,
    )


class ConfigMismatchError(RuntimeError):
    """The output was produced with another config."""


def check_same_config(
    out: str | Path, cfg: PreprocessConfig, backends: dict[str, Any] | None = None
) -> None:
    """Refuse to mix clips made with different configs or model weights in one output.

    Compares ``OUT/config.yaml`` (all but the ``run.*`` execution knobs) and, given the
    loaded ``backends``' identities, ``OUT/backends.json`` (backend names, weight paths and
    sha256 of the weights).
    """
    changed: dict[str, tuple[Any, Any]] = {}
    text = read_text(uri_join(out, CONFIG_FILE))
    if text is not None:
        old = _flatten(yaml.safe_load(text) or {})
        new = _flatten(config_to_dict(cfg))
        changed.update(_differences(old, new, skip=RUN_SECTION))
    text = read_text(uri_join(out, BACKENDS_FILE)) if backends is not None else None
    if text is not None and backends is not None:
        old = _flatten({"backends": json.loads(text)})
        changed.update(_differences(old, _flatten({"backends": backends})))
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise ConfigMismatchError(
            f"{out} was written with a different config or model ({detail}); use a new "
            "output, or pass --allow-config-change to add clips made with the new one"
        )


def _differences(
    old: dict[str, Any], new: dict[str, Any], skip: str = "\0"
) -> dict[str, tuple[Any, Any]]:
    keys = (k for k in old.keys() | new.keys() if not k.startswith(skip))
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def finished_sources(out: str | Path) -> set[str]:
    """Sources that an earlier run on ``out`` already finished (any status)."""
    try:
        table = read_videos(out)
    except FileNotFoundError:
        return set()
    return set(table.column("source").to_pylist()) if table.num_rows else set()
