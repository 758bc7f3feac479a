"""The shard writer: per-video transactions into whole WebDataset shards plus their Parquet rows.

A video is one transaction. ``writer.begin_video(video_id)`` returns a :class:`VideoStaging`;
``staging.add(encoded, row)`` spills each encoded clip to a private staging tar under
``OUT/.staging/`` (memory stays bounded for long videos); ``staging.commit(video_row)`` moves
the clips into shards and ``staging.discard()`` deletes them, so a video that fails half-way
leaves nothing in any shard. Failed and skipped videos are recorded with
``writer.add_video_row(row)``.

A shard and its clips Parquet file are written under hidden ``.NAME.tmp`` names and renamed
when whole, in this order:

1. the tar is finished (end-of-archive written, fsynced);
2. its clips rows and the pending video rows are written to Parquet tmp files (fsynced);
3. rename ``shards/.NAME.tar.tmp`` -> ``shards/NAME.tar``;
4. rename ``stats/clips/.NAME.parquet.tmp`` -> ``stats/clips/NAME.parquet`` (the commit point:
   readers list a shard only once its clips Parquet file exists);
5. rename ``stats/videos/.NAME.parquet.tmp`` -> ``stats/videos/NAME.parquet``.

A video's row is written only when all of its clips are in closed shards, i.e. with the
shard that holds its last clip (a video may span shards), or at ``close()``.

Crash semantics (the process dies at any point): before 3, only hidden tmp files remain and
the videos of the open shard have no rows, so a re-run redoes them. Between 3 and 4 the tar
is an orphan that readers ignore and ``python -m shards validate`` reports (delete it).
Between 4 and 5, or when a video spans shards and only the first one closed, some clips are
in the shards but their video has no row yet; a re-run processes the video again and the
writer skips every clip whose key is already in the output (keys are stable), so nothing is
duplicated. Leftover ``.tmp`` files, ``.staging/`` folders and orphan tars of a dead writer
are reported by ``validate``; :func:`remove_leftovers` deletes them (the preprocessing job
does so when it starts). A writer holds an advisory lock (``flock``) on each of these files
from its creation until it is published, so only files whose writer has died are deleted,
even while other writers run.

Object storage (``s3://bucket/out`` or any URI of ``shards.storage``): the writer
works in a private local folder and uploads each finished file in the same order (tar, clips
Parquet, videos Parquet) instead of renaming it; an object PUT is atomic, so readers see a
shard whole or not at all, and the crash semantics above hold with "rename" read as "upload".
Numbers continue after what is already in the bucket; unlike a POSIX folder, S3 offers no
exclusive create, so two writers on one remote output need different ``prefix`` values.

Names never collide: numbers continue after everything already in the output with the same
``prefix``, and a number is claimed by creating its tmp tar exclusively (``O_EXCL``), so
several writers, even with the same prefix, can append to one output on a shared POSIX file
system. A writer is not thread-safe.

Claiming names, publishing (rename or upload) and removing leftovers are in ``publish.py``;
a video's staging tar is ``staging.py``, which the writer drives through two callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import webdataset as wds

from shards.publish import (
    Destination,
    remove_if_empty,
    sync,
    tmp_path,
    write_parquet,
)
from shards.publish import remove_leftovers as remove_leftovers  # re-exported
from shards.schema import (
    CLIP_SCHEMA,
    SHARD_PREFIX,
    STAGING_DIR,
    VIDEO_SCHEMA,
    ClipRow,
    VideoRow,
    rows_to_table,
    shard_name,
)
from shards.staging import VideoStaging, check_video_row, tar_writer

log = logging.getLogger(__name__)

TAR_BLOCK = 512
TAR_RECORD = 20 * TAR_BLOCK
"""tarfile pads a closed archive to whole 10 KiB records."""


def tar_file_size(payload: int) -> int:
    """Size of a closed tar whose members take ``payload`` bytes (headers included)."""
    used = payload + 2 * TAR_BLOCK
    return -(-used // TAR_RECORD) * TAR_RECORD


@dataclass
class _OpenShard:
    name: str
    tmp: Path
    file: BinaryIO
    tar: wds.TarWriter
    rows: list[ClipRow] = field(default_factory=list)
    payload: int = 0


class ShardWriter:
    """Writes whole shards ``OUT/shards/{prefix}-NNNNNN.tar`` and, with each, its Parquet rows.

    A shard is closed before a clip would push it past ``max_clips`` clips or ``max_bytes``
    bytes on disk (a single clip larger than ``max_bytes`` gets a shard of its own). Use as a
    context manager; leaving it (also on an exception) closes the open shard, whose committed
    videos are whole, and deletes the writer's staging folder.
    """

    def __init__(
        self,
        root: str | Path,
        max_clips: int = 256,
        max_bytes: int = 1 << 30,
        *,
        prefix: str = SHARD_PREFIX,
    ) -> None:
        if max_clips < 1 or max_bytes < 1:
            raise ValueError(f"max_clips and max_bytes must be >= 1, got {max_clips}, {max_bytes}")
        shard_name(prefix, 0)  # validates the prefix
        self.uri = str(root)
        """Where the output lives (local folder or URI)."""
        self._dest = Destination(self.uri, prefix)
        self.root = self._dest.root
        """The local folder files are written in: the output itself, or a private work
        folder whose finished files are uploaded to a remote output."""
        self.max_clips, self.max_bytes, self.prefix = max_clips, max_bytes, prefix
        self.shards_dir = self._dest.shards_dir
        self.clips_dir = self._dest.clips_dir
        self.videos_dir = self._dest.videos_dir
        token = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        self.staging_dir = self.root / STAGING_DIR / token
        self.staging_dir.mkdir(parents=True)
        self.written: list[str] = []
        """Names of the shards this writer closed (``shard-000000.tar``, ...)."""
        self._key_shard = self._dest.committed_keys()
        self._shard: _OpenShard | None = None
        self._pending_videos: list[VideoRow] = []
        self._stagings: dict[int, VideoStaging] = {}
        self._counter = 0
        self._closed = False
        self._broken = False
        log.info(
            "shard writer on %s (prefix %s, from number %d, %d clips already there)",
            self.uri,
            prefix,
            self._dest.next_number,
            len(self._key_shard),
        )

    # -- public API ----------------------------------------------------------------------------

    def begin_video(self, video_id: str) -> VideoStaging:
        """Start the transaction of one video's clips."""
        self._check_usable()
        self._counter += 1
        staging = VideoStaging(
            video_id,
            self.staging_dir / f"{self._counter:08d}.tar",
            on_commit=self._move_into_shards,
            on_close=self._forget,
        )
        self._stagings[id(staging)] = staging
        return staging

    def add_video_row(self, row: VideoRow) -> None:
        """Record a video without clips (failed, skipped); written with the next shard or close."""
        self._check_usable()
        check_video_row(row)
        if row.n_clips:
            raise ValueError(
                f"video {row.video_id} has n_clips={row.n_clips}: videos with clips are "
                "recorded by begin_video(...).commit(row)"
            )
        self._pending_videos.append(row)

    def close(self) -> None:
        """Close the open shard and flush pending video rows; delete the staging folder."""
        if self._closed:
            return
        self._closed = True
        for staging in list(self._stagings.values()):
            log.warning("video %s was neither committed nor discarded: discarded", staging.video_id)
            staging.discard()
        try:
            if self._broken:
                self._abort_shard()
            else:
                if self._shard is not None:
                    self._close_shard()
                if self._pending_videos:
                    self._flush_videos_only()
        finally:
            shutil.rmtree(self.staging_dir, ignore_errors=True)
            remove_if_empty(self.staging_dir.parent)
            self._dest.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the transaction (VideoStaging's callbacks) ---------------------------------------------

    def _forget(self, staging: VideoStaging) -> None:
        self._stagings.pop(id(staging), None)

    def _move_into_shards(self, staging: VideoStaging, video_row: VideoRow) -> None:
        """Move a staged video's clips into shards, then queue its row. Any failure here
        breaks the writer: the open shard is dropped, nothing partial becomes visible."""
        self._check_usable()
        try:
            skipped = 0
            for sample, row, nbytes in staging.read_back():
                skipped += self._write_sample(sample, row, nbytes)
            self._pending_videos.append(video_row)
        except BaseException:
            self._broken = True
            self._abort_shard()
            raise
        if skipped:
            log.warning(
                "video %s: %d clips already in the output were skipped", video_row.video_id, skipped
            )

    # -- shards --------------------------------------------------------------------------------

    def _write_sample(self, sample: dict[str, Any], row: ClipRow, nbytes: int) -> int:
        """Append one clip to the open shard (rolling over first if needed); 1 if skipped."""
        existing = self._key_shard.get(row.key)
        if existing is not None:
            row.shard = existing
            return 1
        shard = self._shard
        if shard is not None and (
            len(shard.rows) >= self.max_clips
            or tar_file_size(shard.payload + nbytes) > self.max_bytes
        ):
            self._close_shard()
            shard = None
        if shard is None:
            shard = self._shard = self._open_shard()
        shard.tar.write(sample)
        shard.payload += nbytes
        row.shard = f"{shard.name}.tar"
        shard.rows.append(row)
        self._key_shard[row.key] = row.shard
        return 0

    def _open_shard(self) -> _OpenShard:
        name, fd = self._dest.claim()
        file = os.fdopen(fd, "wb")
        tar = tar_writer(file)
        return _OpenShard(name, tmp_path(self.shards_dir / f"{name}.tar"), file, tar)

    def _close_shard(self) -> None:
        shard = self._shard
        assert shard is not None
        self._shard = None
        tar_final = self.shards_dir / f"{shard.name}.tar"
        clips_final = self.clips_dir / f"{shard.name}.parquet"
        videos_final = self.videos_dir / f"{shard.name}.parquet"
        videos = self._pending_videos
        # Every file stays open (so locked: see remove_leftovers) until all are published.
        with contextlib.ExitStack() as held:
            held.callback(shard.file.close)
            try:
                shard.tar.close()
                sync(shard.file)
                table = rows_to_table(shard.rows, CLIP_SCHEMA)
                held.enter_context(write_parquet(table, tmp_path(clips_final)))
                if videos:
                    table = rows_to_table(videos, VIDEO_SCHEMA)
                    held.enter_context(write_parquet(table, tmp_path(videos_final)))
                size = shard.tmp.stat().st_size
                self._dest.publish(shard.tmp, tar_final)
                self._dest.publish(tmp_path(clips_final), clips_final)
                if videos:
                    self._dest.publish(tmp_path(videos_final), videos_final)
            except BaseException:
                self._broken = True
                if not self._dest.exists(clips_final):  # not committed: take the tar back
                    self._dest.delete(tar_final)
                for p in (shard.tmp, tmp_path(clips_final), tmp_path(videos_final)):
                    p.unlink(missing_ok=True)
                raise
        self._pending_videos = []
        self.written.append(tar_final.name)
        log.info(
            "wrote %s: %d clips, %.1f MB, %d video rows",
            tar_final.name,
            len(shard.rows),
            size / 1e6,
            len(videos),
        )

    def _flush_videos_only(self) -> None:
        """Write pending video rows under a freshly claimed number (no shard)."""
        name, fd = self._dest.claim()
        lock = tmp_path(self.shards_dir / f"{name}.tar")
        final = self.videos_dir / f"{name}.parquet"
        try:
            table = rows_to_table(self._pending_videos, VIDEO_SCHEMA)
            with write_parquet(table, tmp_path(final)):
                self._dest.publish(tmp_path(final), final)
        finally:
            tmp_path(final).unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
            os.close(fd)
        log.info("wrote %s: %d video rows", final.name, len(self._pending_videos))
        self._pending_videos = []

    def _abort_shard(self) -> None:
        shard, self._shard = self._shard, None
        if shard is not None:
            log.error("dropping unfinished shard %s (%d clips)", shard.name, len(shard.rows))
            with contextlib.suppress(Exception):
                shard.tar.close()
            shard.file.close()
            shard.tmp.unlink(missing_ok=True)
        if self._pending_videos:
            log.error("dropping %d video rows not yet written", len(self._pending_videos))
            self._pending_videos = []

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("the shard writer is closed")
        if self._broken:
            raise RuntimeError("the shard writer failed earlier (see the log); start a new one")
