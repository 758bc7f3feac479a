"""The Ray job's writers: whole videos committed into each writer's own shards, on the workers.

Each writer actor of ``preprocess.ray_job`` (fused and separate layouts: ``run.writers`` of
them, one per node by default), and the writer inside each actor of the inline layout
(``preprocess.inline``), is a :class:`VideoWriter`: a ``shards.writer.ShardWriter`` with its own shard prefix
(``shard-wNNN``) and a :class:`VideoAssembler`. Every item of a video (its clips, encoded,
and its ``end`` row, from ``preprocess.transit``) goes to the same writer (chosen from the
video id by :func:`writer_for`); the assembler stages the clips as they arrive, in any order,
and commits the video through the same staged, whole-shard transaction as the in-process run
once all of them are there, or records its ``failed`` row. What goes back to the driver is a
:class:`VideoReport` per finished video: its row and its clips' stage times, a few hundred
bytes. A video is counted done only once its row is in ``stats/videos`` on disk (the driver
checks, ``preprocess.ray_job``); a writer that dies takes its uncommitted videos with it and
the driver runs them again. Nothing here imports Ray.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from preprocess.clip import StageError, VideoInfo
from preprocess.config import ShardConfig
from preprocess.runner import failed_row, video_row_ok
from preprocess.stages import DECODE, stage_rank
from preprocess.transit import Item
from shards.reader import read_videos
from shards.schema import SHARD_PREFIX, ClipRow, VideoRow
from shards.staging import VideoStaging
from shards.writer import ShardWriter

log = logging.getLogger(__name__)


@dataclass
class VideoReport:
    """What the driver learns of a finished video: its row, no sample bytes."""

    row: VideoRow
    times: list[dict[str, float]] = field(default_factory=list)
    """Stage times of each committed clip."""
    store_bytes: int = 0
    """Object-store bytes its committed clips took on their way (``Item.store_bytes``)."""
    raw_bytes: int = 0
    """Raw frame bytes of its committed clips."""


@dataclass
class _Video:
    source: str
    started: float
    staging: VideoStaging
    seen: set[int] = field(default_factory=set)
    """Clip positions received (a retried task may emit a clip again)."""
    rows: list[ClipRow] = field(default_factory=list)
    times: list[dict[str, float]] = field(default_factory=list)
    store_bytes: int = 0
    raw_bytes: int = 0
    expected: int | None = None
    info: VideoInfo | None = None
    error: StageError | None = None

    def note_error(self, err: StageError) -> None:
        """Keep the failure of the earliest stage (the one a local run would have reported)."""
        if self.error is None or stage_rank(err.stage) < stage_rank(self.error.stage):
            self.error = err


class VideoAssembler:
    """Stages each video's encoded clips as they arrive; commits or fails it when complete."""

    def __init__(self, writer: ShardWriter, finished: set[str] | None = None) -> None:
        self.writer = writer
        self.open: dict[str, _Video] = {}
        self.finished: set[str] = set(finished or ())
        """Videos committed or failed (here, or in the output already): items ignored."""

    def add(self, item: Item) -> VideoReport | None:
        """Take one item; the video's report when this item finished it."""
        if item.video_id in self.finished:  # re-emitted by a retried task: already written
            return None
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
                video.store_bytes += item.store_bytes
                video.raw_bytes += item.raw_bytes
        if video.expected is not None and len(video.seen) >= video.expected:
            return self._finish(item.video_id, video)
        return None

    def _finish(self, video_id: str, video: _Video) -> VideoReport:
        del self.open[video_id]
        self.finished.add(video_id)
        seconds = time.time() - video.started
        if video.error is None and video.info is not None:
            row = video_row_ok(video.info, video.rows, seconds)
            video.staging.commit(row)
            log.info("done %s: %s, %d clips", video.source, row.status, len(video.rows))
            return VideoReport(row, video.times, video.store_bytes, video.raw_bytes)
        err = video.error or StageError(DECODE, "the video ended without its probe")
        video.staging.discard()
        log.warning("failed %s at %s: %s", video.source, err.stage, err.message)
        row = failed_row(video.source, err, seconds)
        self.writer.add_video_row(row)
        return VideoReport(row)


def writer_prefix(index: int) -> str:
    """Shard prefix of writer ``index``: ``shard-w000``, ... (its own names, even on S3)."""
    return f"{SHARD_PREFIX}-w{index:03d}"


def writer_for(video_id: str, n_writers: int) -> int:
    """Which writer takes every item of a video (the same one for all of them)."""
    return int(video_id[:8], 16) % n_writers


class VideoWriter:
    """One writer: its own ``ShardWriter`` (prefix ``shard-wNNN``) and assembler.

    On Ray an actor (``preprocess.ray_job``); ``add`` is called by the task that finished an
    item, ``close`` by the driver at the end of the pass, which publishes the open shard and
    the pending video rows. Videos already in ``stats/videos`` when it starts are ignored (a
    restarted writer must not write a video twice).
    """

    def __init__(self, out: str, shards: ShardConfig, index: int) -> None:
        try:
            done = {str(v) for v in read_videos(out).column("video_id").to_pylist()}
        except FileNotFoundError:
            done = set()
        self.shards = ShardWriter(
            out, shards.max_clips, shards.max_bytes, prefix=writer_prefix(index)
        )
        self.assembler = VideoAssembler(self.shards, done)

    def add(self, item: Item) -> list[VideoReport]:
        """Stage one item of a video; the video's report if it is now committed or failed."""
        report = self.assembler.add(item)
        return [] if report is None else [report]

    def close(self) -> list[str]:
        """Publish what is pending; unfinished videos are discarded. Names of shards written."""
        for video_id in list(self.assembler.open):
            log.warning("video %s incomplete at the end of the pass: discarded", video_id)
        self.shards.close()
        return list(self.shards.written)
