"""Where the shard writer's finished files go: shard names claimed, files published, leftovers.

:class:`Destination` is one writer's view of its output: the local folder it writes in (the
output itself, or a private work folder when the output is remote), the free shard numbers
(claimed with ``O_EXCL`` and locked), and :meth:`Destination.publish`, which makes a finished
tmp file visible under its final name (a rename locally, one upload for an object store).
:func:`remove_leftovers` deletes what dead writers left; the advisory lock (``flock``) that a
writer holds on each of its files while it lives is what tells the two apart. The order in
which files are published, and why, is in ``writer.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.dataset as pads
import pyarrow.parquet as pq

from shards.reader import read_clips
from shards.schema import (
    CLIPS_DIR,
    NAME_RE,
    SHARDS_DIR,
    STAGING_DIR,
    TMP_SUFFIX,
    VIDEOS_DIR,
    shard_name,
)
from shards.storage import delete, exists, is_remote, list_dir, upload, uri_join

log = logging.getLogger(__name__)


def tmp_path(final: Path) -> Path:
    """Hidden tmp name beside ``final``: ``dir/.NAME.tmp`` (ignored by pyarrow and globs)."""
    return final.with_name(f".{final.name}{TMP_SUFFIX}")


class Destination:
    """One writer's output: local work folders, free shard names, publishing.

    ``root`` is where files are written: the output folder itself, or for a remote ``uri``
    (``s3://...``) a private local folder whose finished files are uploaded (and which
    :meth:`close` deletes).
    """

    def __init__(self, uri: str, prefix: str) -> None:
        self.uri = uri
        self.remote = is_remote(uri)
        self.root = Path(tempfile.mkdtemp(prefix="mcanim-writer-")) if self.remote else Path(uri)
        self.prefix = prefix
        self.shards_dir = self.root / SHARDS_DIR
        self.clips_dir = self.root / CLIPS_DIR
        self.videos_dir = self.root / VIDEOS_DIR
        for d in (self.shards_dir, self.clips_dir, self.videos_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._next = self._first_free_number()

    @property
    def next_number(self) -> int:
        """The lowest shard number this writer may still claim."""
        return self._next

    def final_uri(self, final: Path) -> str:
        """Where a file of ``root`` is visible to readers (itself, or its remote object)."""
        return uri_join(self.uri, final.relative_to(self.root).as_posix())

    def publish(self, tmp: Path, final: Path) -> None:
        """Make a finished tmp file visible under its final name: rename, or upload + unlink."""
        if not self.remote:
            os.rename(tmp, final)
            return
        upload(tmp, self.final_uri(final))
        tmp.unlink()

    def exists(self, final: Path) -> bool:
        return final.exists() if not self.remote else exists(self.final_uri(final))

    def delete(self, final: Path) -> None:
        """Take a published file back (nothing when it is not there)."""
        if not self.remote:
            final.unlink(missing_ok=True)
        else:
            delete(self.final_uri(final))

    def committed_keys(self) -> dict[str, str]:
        """key -> shard of every clip already committed to the output."""
        if not self.remote:
            return committed_keys(self.clips_dir)
        try:
            table = read_clips(self.uri, columns=["key", "shard"])
        except FileNotFoundError:
            return {}
        return dict(zip(table["key"].to_pylist(), table["shard"].to_pylist(), strict=True))

    def claim(self) -> tuple[str, int]:
        """Claim the next free shard name by creating its tmp tar with O_EXCL; (name, fd).
        The fd is locked (see :func:`lock_new_file`); closing it releases the claim's lock."""
        number = self._next
        while True:
            name = shard_name(self.prefix, number)
            number += 1
            tmp = tmp_path(self.shards_dir / f"{name}.tar")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue
            if not lock_new_file(fd):  # removed as a leftover before we locked it: next one
                os.close(fd)
                continue
            if not self._name_used(name):
                self._next = number
                return name, fd
            os.close(fd)
            tmp.unlink()

    def close(self) -> None:
        """Delete the private work folder of a remote output."""
        if self.remote:
            shutil.rmtree(self.root, ignore_errors=True)

    def _name_used(self, name: str) -> bool:
        finals = (
            self.shards_dir / f"{name}.tar",
            self.clips_dir / f"{name}.parquet",
            self.videos_dir / f"{name}.parquet",
        )
        return any(self.exists(p) for p in finals)

    def _first_free_number(self) -> int:
        numbers = [-1]
        for d in (self.shards_dir, self.clips_dir, self.videos_dir):
            names = [p.name for p in d.iterdir()]
            if self.remote:
                names += [e.name for e in list_dir(self.final_uri(d), hidden=True)]
            for name in names:
                stem = name.lstrip(".").removesuffix(TMP_SUFFIX).split(".")[0]
                m = NAME_RE.fullmatch(stem)
                if m and m["prefix"] == self.prefix:
                    numbers.append(int(m["number"]))
        return max(numbers) + 1


def committed_keys(clips_dir: Path) -> dict[str, str]:
    """key -> shard of every clip already committed under a local ``clips_dir``."""
    files = sorted(str(p) for p in clips_dir.glob("*.parquet"))
    if not files:
        return {}
    table = pads.dataset(files, format="parquet").to_table(columns=["key", "shard"])
    return dict(
        zip(table.column("key").to_pylist(), table.column("shard").to_pylist(), strict=True)
    )


def lock_new_file(fd: int) -> bool:
    """Take the advisory lock that marks a writer's file as alive (held until it is closed);
    False if :func:`remove_leftovers` deleted the file between its creation and now."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    return os.fstat(fd).st_nlink > 0


def write_parquet(table: Any, path: Path) -> BinaryIO:
    """Write, flush and fsync ``path``; returned open (and locked) for the caller to close."""
    f = open(path, "wb")  # noqa: SIM115 (closed by the caller, after publishing)
    try:
        if not lock_new_file(f.fileno()):
            raise RuntimeError(f"{path} was removed as a leftover while being created")
        pq.write_table(table, f)
        sync(f)
    except BaseException:
        f.close()
        raise
    return f


def sync(file: BinaryIO) -> None:
    """Flush and fsync an open file."""
    file.flush()
    os.fsync(file.fileno())


def remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def remove_leftovers(root: str | Path) -> int:
    """Delete the tmp and staging files and orphan tars of dead writers (local output); how many.

    A file is a dead writer's when its advisory lock can be taken: writers lock every tmp
    and staging file while it is open (POSIX ``flock``; on a network file system that does
    not support it, run this only when no writer is running). Remote outputs have no tmp
    files (see ``writer.py``): nothing to do.
    """
    if is_remote(root):
        return 0
    out = Path(root)
    committed = {p.stem for p in out.joinpath(CLIPS_DIR).glob("*.parquet")}
    candidates = [
        *(p for p in out.joinpath(SHARDS_DIR).glob("*.tar") if p.stem not in committed),
        *out.joinpath(SHARDS_DIR).glob(f".*{TMP_SUFFIX}"),
        *out.joinpath(CLIPS_DIR).glob(f".*{TMP_SUFFIX}"),
        *out.joinpath(VIDEOS_DIR).glob(f".*{TMP_SUFFIX}"),
        *(p for p in out.joinpath(STAGING_DIR).rglob("*") if p.is_file()),
    ]
    removed = 0
    for path in candidates:
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's
            path.unlink()
            removed += 1
    staging = out / STAGING_DIR
    if staging.is_dir():
        for folder in sorted(staging.iterdir(), reverse=True):
            remove_if_empty(folder)
        remove_if_empty(staging)
    if removed:
        log.warning("removed %d tmp/staging files left by a dead writer in %s", removed, out)
    return removed
