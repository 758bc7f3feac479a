"""The runner core: what both runners do around the stages, written once.

``preprocess.pipeline.run`` (in process) and ``preprocess.ray_job.run_ray`` (on Ray) share:

- the output's bookkeeping (:func:`open_output`): ``OUT/config.yaml`` and ``OUT/backends.json``
  written with the format version, checked on a re-run (another format version is refused;
  another config or other weights too, unless ``--allow-config-change``; the ``run.*`` knobs
  never count), leftovers of a killed run removed, finished sources skipped;
- the stage table built into stage objects (:func:`load_models`, :func:`build_steps`);
- the ``stats/videos`` rows of finished and failed videos, and the :class:`RunSummary`.

The shard writer (``shards.writer``) is where the clips go next; the summary is printed by
``python -m preprocess``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from preprocess import stages
from preprocess.clip import StageError, VideoInfo, video_id_for
from preprocess.config import PreprocessConfig
from preprocess.discover import discover
from preprocess.stages import DECODE, ModelStage, RunMeta, Stage, StageFn, stage_names
from shards.config import ConfigError, config_from_dict, config_to_dict
from shards.reader import read_videos
from shards.schema import (
    CONFIG_FILE,
    ClipRow,
    VideoRow,
    check_format_version,
    with_format_version,
)
from shards.storage import canonical, make_dirs, read_text, uri_join, write_text
from shards.writer import remove_leftovers

log = logging.getLogger(__name__)

BACKENDS_FILE = "backends.json"
"""``OUT/backends.json``: name, model path and weights sha256 of each backend of the output,
compared on resume like ``OUT/config.yaml``."""
RUN_SECTION = "run."
"""Config keys that change how the job runs, never what it writes: not compared on resume."""


class ConfigMismatchError(RuntimeError):
    """The output was produced with another config."""


# --- the stage table, built -----------------------------------------------------------------


def load_models(
    cfg: PreprocessConfig, table: Sequence[Stage] | None = None
) -> dict[str, ModelStage]:
    """Every model stage of ``table`` (:data:`~preprocess.stages.STAGES`), loaded, by name."""
    table = stages.STAGES if table is None else table
    return {s.name: s.model(cfg) for s in table if s.model is not None}


def backend_identities(models: Mapping[str, ModelStage]) -> dict[str, Any]:
    """``OUT/backends.json`` and every clip's ``backends``: identity of each loaded backend."""
    return {kind: ident for m in models.values() for kind, ident in m.backends().items()}


def build_steps(
    cfg: PreprocessConfig,
    run_meta: RunMeta,
    models: Mapping[str, ModelStage],
    table: Sequence[Stage] | None = None,
) -> list[tuple[Stage, StageFn]]:
    """Every stage of ``table`` with its stage object (``models`` for the model stages)."""
    table = stages.STAGES if table is None else table
    return [(s, models[s.name] if s.cpu is None else s.cpu(cfg, run_meta)) for s in table]


# --- the output -----------------------------------------------------------------------------


def output_root(output: str | Path) -> str:
    """The output as the writer and readers name it: an absolute local path, or the URI."""
    return canonical(output)


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
    different config or different model weights is refused unless ``allow_config_change``,
    and an output of another format version is refused always.
    """
    make_dirs(output)
    check_same_config(output, cfg, backends, compare=not allow_config_change)
    remove_leftovers(output)  # tmp and staging files of a killed earlier run
    sources = discover(inputs)
    done = finished_sources(output)
    todo = [s for s in sources if s not in done]
    log.info("%d inputs, %d already done, %d to process", len(sources), len(done), len(todo))
    config = config_to_dict(cfg)
    text = yaml.safe_dump(with_format_version(config), sort_keys=False)
    write_text(uri_join(output, CONFIG_FILE), text)
    text = json.dumps(with_format_version(backends), indent=2, sort_keys=True)
    write_text(uri_join(output, BACKENDS_FILE), text)
    return OutputPlan(todo, len(sources) - len(todo), {"config": config, "backends": backends})


def check_same_config(
    out: str | Path,
    cfg: PreprocessConfig,
    backends: dict[str, Any] | None = None,
    *,
    compare: bool = True,
) -> None:
    """Refuse to mix clips made with different configs, model weights or formats in one output.

    Checks the format version of ``OUT/config.yaml`` and ``OUT/backends.json`` (FormatVersion
    Error); with ``compare``, compares the config (all but the ``run.*`` execution knobs) and,
    given the loaded ``backends``' identities, the backends (names, weight paths and sha256).
    """
    old_config = _stored(uri_join(out, CONFIG_FILE), yaml.safe_load)
    old_backends = _stored(uri_join(out, BACKENDS_FILE), json.loads)
    if not compare:
        return
    changed: dict[str, tuple[Any, Any]] = {}
    if old_config is not None:
        new = _flatten(config_to_dict(cfg))
        changed.update(_differences(_flatten(_with_defaults(old_config)), new, skip=RUN_SECTION))
    if old_backends is not None and backends is not None:
        old = _flatten({"backends": old_backends})
        changed.update(_differences(old, _flatten({"backends": backends})))
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise ConfigMismatchError(
            f"{out} was written with a different config or model ({detail}); use a new "
            "output, or pass --allow-config-change to add clips made with the new one"
        )


def _with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the keys added since it was written at their defaults, so that an
    output written before a new option existed resumes when the option keeps its default
    (a key that no longer exists cannot be filled: the stored mapping is compared as it is)."""
    try:
        return config_to_dict(config_from_dict(PreprocessConfig, stored))
    except ConfigError:
        return stored


def _stored(path: str, parse: Callable[[str], Any]) -> dict[str, Any] | None:
    """A stored mapping without its format version (checked); None when there is no file."""
    text = read_text(path)
    if text is None:
        return None
    data = parse(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return check_format_version(data, path)


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


# --- video rows -----------------------------------------------------------------------------


def failed_row(source: str, err: StageError, seconds: float) -> VideoRow:
    """A failed video's ``stats/videos`` row: the stage and the reason."""
    return VideoRow(
        video_id=video_id_for(source),
        source=source,
        status="failed",
        error_stage=err.stage,
        error=err.message,
        seconds=seconds,
    )


def video_row_ok(info: VideoInfo, rows: list[ClipRow], seconds: float) -> VideoRow:
    """A finished video's row, with statistics aggregated frame-weighted over its clips."""
    return VideoRow(
        video_id=info.video_id,
        source=info.source,
        status="ok" if rows else "skipped",
        error_stage=None if rows else DECODE,
        error=None if rows else "no shot long enough for a clip (decode.min_clip_frames)",
        n_clips=len(rows),
        n_frames=sum(r.n_frames for r in rows),
        duration_s=info.src_frames / info.src_fps if info.src_fps > 0 else None,
        src_width=info.src_width,
        src_height=info.src_height,
        src_fps=info.src_fps,
        src_frames=info.src_frames,
        rotation=info.rotation,
        codec=info.codec,
        width=info.width,
        height=info.height,
        fps=info.fps,
        bg_flow_mean=_weighted([(r.bg_flow_mean, r.n_frames - 1) for r in rows]),
        occlusion_rate_mean=_weighted(
            [(r.occlusion_rate_mean, r.multi_character_frac * r.n_frames) for r in rows]
        ),
        characters_max=max((r.characters_max for r in rows), default=0),
        multi_character_frac=_weighted([(r.multi_character_frac, r.n_frames) for r in rows]),
        seconds=seconds,
    )


def _weighted(pairs: list[tuple[float | None, float]]) -> float | None:
    """Weighted mean of the non-null values; None when nothing has weight."""
    kept = [(v, w) for v, w in pairs if v is not None and w > 0]
    total = sum(w for _, w in kept)
    return float(np.sum([v * w for v, w in kept]) / total) if total > 0 else None


# --- the summary ----------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run did: videos by status, failures, and per-stage throughput."""

    status: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, stage, message) of each failed video."""
    clips: int = 0
    frames: int = 0
    stage_seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(stage_names(), 0.0)
    )
    """Wall seconds per stage, summed over the committed clips, in table order."""
    wall_seconds: float = 0.0
    skipped_done: int = 0
    """Videos already finished in an earlier run on the same output."""
    driver_bytes: int = 0
    """Ray job: bytes the driver received (the writers' per-video reports)."""
    store_bytes: int = 0
    """Ray job: object-store bytes the committed clips took on their way (rows between the
    operators, the encoded samples handed to the writers)."""
    raw_bytes: int = 0
    """Ray job: raw frame bytes (T x H x W x 3) of the committed clips."""
    passes: int = 1
    """Ray job: passes over the videos (more than one when work was lost, e.g. a node)."""

    def add(self, row: VideoRow, clip_seconds: Sequence[Mapping[str, float]] = ()) -> None:
        """A finished video: its row, and the stage times of each of its committed clips."""
        self.status[row.status] += 1
        if row.status == "failed":
            self.failures.append((row.source, row.error_stage or "?", row.error or ""))
        self.clips += len(clip_seconds)
        self.frames += row.n_frames
        for seconds in clip_seconds:
            for name, s in seconds.items():
                self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + s

    def format(self) -> str:
        lines = [
            f"videos: {dict(self.status)} (+{self.skipped_done} already done), "
            f"clips: {self.clips}, frames: {self.frames}, wall: {self.wall_seconds:.1f} s"
            + (f", {self.passes} passes (work lost and run again)" if self.passes > 1 else ""),
            "frames/s per stage: "
            + ", ".join(
                f"{n} {self.frames / s:.1f}" if s >= 0.01 else f"{n} (< 10 ms in all)"
                for n, s in self.stage_seconds.items()
            ),
        ]
        if self.frames and (self.driver_bytes or self.raw_bytes):
            lines.append(
                f"per stored frame: {self.driver_bytes / self.frames:.0f} bytes through the "
                f"driver, object-store bytes {self.store_ratio():.2f} x the raw frame"
            )
        lines += [f"failed at {stg}: {n} x {msg}" for (stg, msg), n in self.reasons().items()]
        return "\n".join(lines)

    def store_ratio(self) -> float:
        """Object-store bytes ÷ raw frame bytes of the committed clips (0 when unknown)."""
        return self.store_bytes / self.raw_bytes if self.raw_bytes else 0.0

    def reasons(self) -> dict[tuple[str, str], int]:
        """Failed videos by (stage, reason): the message up to its first colon."""
        return dict(
            Counter((stg, msg.split(":")[0]) for _, stg, msg in self.failures).most_common()
        )
