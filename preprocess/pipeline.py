"""The in-process run (``run.runner=local``): every video through the stage table, in order.

A video is one transaction: its clips are decoded one at a time, pushed through every stage
of ``preprocess.stages.STAGES`` and staged in the shard writer (``shards.writer``) as they
come out; the video is committed only when all of them succeeded. A failure at any stage
discards what was staged and records a ``failed`` row with the stage and the message; the
run goes on. The output bookkeeping (config and model checks, resume, rows, summary) is
``preprocess.runner``'s, shared with the Ray job (``preprocess.ray_job``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from preprocess import stages
from preprocess.clip import StageError, video_id_for
from preprocess.config import PreprocessConfig
from preprocess.deadline import video_deadline
from preprocess.runner import (
    RunSummary,
    backend_identities,
    build_steps,
    check_same_config,
    failed_row,
    load_models,
    open_output,
    output_root,
    video_row_ok,
)
from preprocess.stages import Stage, StageFn, decoded_clips, finished, probe, run_stages
from shards.schema import ClipRow, VideoRow
from shards.writer import ShardWriter

log = logging.getLogger(__name__)


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
    # Before loading any model: a quick, clear refusal.
    check_same_config(out, cfg, compare=not allow_config_change)
    table = stages.STAGES
    models = load_models(cfg, table)
    backends = backend_identities(models)
    plan = open_output(inputs, out, cfg, backends, allow_config_change=allow_config_change)
    steps = build_steps(cfg, plan.run_meta, models, table)
    summary = RunSummary(skipped_done=plan.skipped_done)
    with ShardWriter(out, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
        bar = tqdm(plan.todo, unit="video", desc="preprocess", dynamic_ncols=True)
        for source in bar:
            process_video(source, cfg, steps, writer, summary)
            bar.set_postfix(
                clips=summary.clips, frames=summary.frames, failed=summary.status["failed"]
            )
    summary.wall_seconds = time.perf_counter() - start
    return summary


def process_video(
    source: str,
    cfg: PreprocessConfig,
    steps: Sequence[tuple[Stage, StageFn]],
    writer: ShardWriter,
    summary: RunSummary,
) -> VideoRow:
    """Run one video through every stage; commit its clips or record why it failed."""
    start = time.perf_counter()
    deadline = video_deadline(cfg.run.video_timeout_s)
    limit = cfg.run.video_timeout_s
    staging = writer.begin_video(video_id_for(source))
    rows: list[ClipRow] = []
    times: list[dict[str, float]] = []
    try:
        info = probe(source, cfg, deadline)
        for clip in decoded_clips(info, cfg, deadline):
            encoded = finished(run_stages(steps, clip, deadline, limit))
            staging.add(encoded.fields, encoded.row)
            rows.append(encoded.row)
            times.append(encoded.seconds)
        row = video_row_ok(info, rows, time.perf_counter() - start)
        staging.commit(row)
    except StageError as err:
        staging.discard()
        log.warning("failed %s at %s: %s", source, err.stage, err.message)
        row = failed_row(source, err, time.perf_counter() - start)
        writer.add_video_row(row)
        summary.add(row)
        return row
    except BaseException:
        staging.discard()
        raise
    summary.add(row, times)
    return row
