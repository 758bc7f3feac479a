"""The in-process run: every video through the stages of ``preprocess.stages``, into shards.

A video is one transaction: its clips are staged as they are produced and committed to the
shards only when the whole video succeeded. A failure at any stage discards what was staged
and records a ``failed`` row with the stage and the message; the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from preprocess.clip import StageError, VideoInfo, stage, video_id_for
from preprocess.config import PreprocessConfig
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
from shards.config import config_to_dict, dump_config
from shards.reader import read_videos
from shards.schema import CONFIG_FILE, ClipRow, VideoRow
from shards.writer import ShardWriter

log = logging.getLogger(__name__)

STAGES = ("decode", "pose", "flow", "depth", "geometry", "encode")


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
        reasons = Counter((stg, msg.split(":")[0]) for _, stg, msg in self.failures)
        lines += [f"failed at {stg}: {n} x {msg}" for (stg, msg), n in reasons.most_common()]
        return "\n".join(lines)


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


def run(
    inputs: list[str],
    output: str | Path,
    cfg: PreprocessConfig,
    *,
    allow_config_change: bool = False,
) -> RunSummary:
    """Preprocess every input video into ``output`` (shards + Parquet statistics).

    Re-running on the same output skips the videos it already finished; doing so with a
    different config is refused unless ``allow_config_change``.
    """
    start = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    if not allow_config_change:
        check_same_config(out, cfg)
    sources = discover(inputs)
    done = finished_sources(out)
    todo = [s for s in sources if s not in done]
    summary = RunSummary(skipped_done=len(sources) - len(todo))
    log.info(
        "%d inputs, %d already done, %d to process",
        len(sources),
        len(sources) - len(todo),
        len(todo),
    )
    extractors = Extractors(cfg)
    run_meta = {"config": config_to_dict(cfg), "backends": extractors.identity()}
    dump_config(cfg, out / CONFIG_FILE)
    with ShardWriter(out, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
        bar = tqdm(todo, unit="video", desc="preprocess", dynamic_ncols=True)
        for source in bar:
            row, rows = process_video(source, cfg, extractors, writer, run_meta)
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
    staging = writer.begin_video(video_id_for(source))
    rows: list[ClipRow] = []
    try:
        with stage("decode"):
            info = probe_video(source, cfg.decode)
        for encoded in _encoded_clips(info, cfg, extractors, run_meta):
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


def _encoded_clips(
    info: VideoInfo, cfg: PreprocessConfig, ex: Extractors, run_meta: dict[str, Any]
) -> Iterator[EncodedClip]:
    """Decode clip by clip (bounded memory) and push each through the stages."""
    clips = iter_clips(info, cfg.decode)
    while True:
        seconds: dict[str, float] = {}
        with stage("decode", seconds):
            clip = next(clips, None)
        if clip is None:
            return
        clip.seconds.update(seconds)
        clip = ex.depth(ex.flow(ex.pose(clip)))
        clip = geometry_stage(clip, cfg)
        yield encode_stage(clip, cfg, run_meta)


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


def check_same_config(out: Path, cfg: PreprocessConfig) -> None:
    """Refuse to mix clips made with different configs in one output."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    old = _flatten(yaml.safe_load(path.read_text()) or {})
    new = _flatten(config_to_dict(cfg))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ConfigMismatchError(
            f"{out} was written with a different config ({detail}); use a new output, or pass "
            "--allow-config-change to add clips made with the new config"
        )


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def finished_sources(out: Path) -> set[str]:
    """Sources that an earlier run on ``out`` already finished (any status)."""
    try:
        table = read_videos(out)
    except FileNotFoundError:
        return set()
    return set(table.column("source").to_pylist()) if table.num_rows else set()
