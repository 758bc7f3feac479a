"""One video's transaction: its encoded clips spilled to a private tar until commit or discard.

Created by :meth:`shards.writer.ShardWriter.begin_video`, which hands it two callbacks: what
``commit`` calls to move the staged clips into shards (the writer's transaction) and what is
called once the staging is over. See ``writer.py`` for the protocol. This module knows
nothing of the writer: the dependency is one-way (writer -> staging).
"""

from __future__ import annotations

import fcntl
import logging
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import webdataset as wds

from shards.schema import (
    FIELDS,
    REQUIRED_FIELDS,
    VIDEO_STATUSES,
    ClipRow,
    VideoRow,
    check_key,
    row_dict,
)

log = logging.getLogger(__name__)


def tar_writer(file: Any) -> wds.TarWriter:
    """A WebDataset tar writer on an open binary file, the fields' bytes written as they are.

    webdataset is imported here, not with the module: its package imports torch (about 1 s
    and 200 MB resident, measured here), which a Ray worker that never writes a tar (a decode
    task, a model actor) would otherwise pay at start-up."""
    import webdataset as wds

    return wds.TarWriter(file, encoder=False)


def check_video_row(row: VideoRow) -> None:
    """Raise ValueError if ``row`` cannot be written (unknown status, missing values)."""
    if row.status not in VIDEO_STATUSES:
        raise ValueError(f"video {row.video_id}: status {row.status!r} not in {VIDEO_STATUSES}")
    row_dict(row)


def check_encoded(encoded: Mapping[str, Any]) -> str:
    """The key of an encoded sample, after checking its field names and value types."""
    key = check_key(encoded.get("__key__", ""))
    names = set(encoded) - {"__key__"}
    unknown, missing = names - set(FIELDS), set(REQUIRED_FIELDS) - names
    if unknown or missing:
        raise ValueError(
            f"sample {key}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}"
        )
    bad = [n for n in names if not isinstance(encoded[n], bytes | bytearray | memoryview)]
    if bad:
        raise TypeError(f"sample {key}: fields {sorted(bad)} are not bytes (encode them first)")
    return key


@dataclass
class _Staged:
    row: ClipRow
    n_members: int
    nbytes: int
    """Bytes the sample takes in a tar, member headers included."""


class VideoStaging:
    """The clips of one video, staged on disk; ``commit`` moves them into shards.

    Also a context manager: an exception inside the block discards the video; leaving the
    block without ``commit`` or ``discard`` discards it and raises RuntimeError.

    ``on_commit(staging, video_row)`` moves the staged clips (``read_back``) into shards and
    records the row; ``on_close(staging)`` is called once the video is committed or
    discarded and its staging tar deleted.
    """

    def __init__(
        self,
        video_id: str,
        path: Path,
        *,
        on_commit: Callable[[VideoStaging, VideoRow], None],
        on_close: Callable[[VideoStaging], None],
    ) -> None:
        self.video_id = video_id
        self.path = path
        self.state = "open"
        """``open`` | ``committed`` | ``discarded``."""
        self._on_commit = on_commit
        self._on_close = on_close
        self._file = open(path, "xb")  # noqa: SIM115 (closed in _finish_tar)
        # Locked while open: remove_leftovers deletes only unlocked (dead writers') files.
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        self._tar: wds.TarWriter | None = tar_writer(self._file)
        self._staged: list[_Staged] = []
        self._keys: set[str] = set()

    @property
    def rows(self) -> list[ClipRow]:
        """Rows of the clips staged so far (``shard`` is set on commit)."""
        return [s.row for s in self._staged]

    def add(self, encoded: Mapping[str, Any], row: ClipRow) -> None:
        """Stage one encoded clip (``encode_sample``'s dict) with its ``stats/clips`` row."""
        self._check_open()
        key = check_encoded(encoded)
        if row.key != key or row.video_id != self.video_id:
            raise ValueError(
                f"row (key {row.key}, video {row.video_id}) does not match the sample "
                f"(key {key}) of video {self.video_id}"
            )
        if key in self._keys:
            raise ValueError(f"video {self.video_id}: clip key {key} staged twice")
        row_dict(row)  # non-nullable columns present
        assert self._tar is not None
        before = self._tar.tarstream.offset
        self._tar.write(dict(encoded))
        nbytes = self._tar.tarstream.offset - before
        self._staged.append(_Staged(row, len(encoded) - 1, nbytes))
        self._keys.add(key)

    def commit(self, video_row: VideoRow) -> None:
        """Move every staged clip into shards (setting ``row.shard``) and queue the video row."""
        self._check_open()
        if video_row.video_id != self.video_id:
            raise ValueError(f"video row {video_row.video_id} committed to {self.video_id}")
        check_video_row(video_row)
        if video_row.status == "failed":
            raise ValueError("a failed video is discard()ed and recorded with add_video_row()")
        if video_row.n_clips != len(self._staged):
            raise ValueError(
                f"video {self.video_id}: row says n_clips={video_row.n_clips}, "
                f"{len(self._staged)} clips staged"
            )
        self._finish_tar()
        try:
            self._on_commit(self, video_row)
            self.state = "committed"
        finally:
            self._cleanup()
            if self.state != "committed":
                self.state = "discarded"

    def discard(self) -> None:
        """Delete the staged clips. Does nothing once committed or discarded."""
        if self.state != "open":
            return
        self._finish_tar()
        self._cleanup()
        self.state = "discarded"
        log.debug("discarded %d staged clips of %s", len(self._staged), self.video_id)

    def read_back(self) -> Iterator[tuple[dict[str, Any], ClipRow, int]]:
        """(sample fields, row, tar bytes) of every staged clip, in order, one at a time."""
        with tarfile.open(self.path, "r|") as tar:
            members = iter(tar)
            for staged in self._staged:
                key = staged.row.key
                sample: dict[str, Any] = {"__key__": key}
                for _ in range(staged.n_members):
                    member = next(members)
                    name, _, ext = member.name.partition(".")
                    reader = tar.extractfile(member)
                    if name != key or reader is None:
                        raise RuntimeError(f"staging tar {self.path} is out of order at {key}")
                    sample[ext] = reader.read()
                tar.members = []  # type: ignore[attr-defined]  # bounded memory on long videos
                yield sample, staged.row, staged.nbytes

    def __enter__(self) -> VideoStaging:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state != "open":
            return
        self.discard()
        if exc_type is None:
            raise RuntimeError(f"video {self.video_id}: neither committed nor discarded")

    def _check_open(self) -> None:
        if self.state != "open":
            raise RuntimeError(f"video {self.video_id} is already {self.state}")

    def _finish_tar(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self._tar = None

    def _cleanup(self) -> None:
        self.path.unlink(missing_ok=True)
        self._on_close(self)
