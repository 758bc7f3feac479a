"""The one storage layer: local paths and object-storage URIs (``s3://bucket/key``) alike.

Every file the project reads or writes by name goes through here: the shard reader and writer,
``validate``, ``stats``, the CLI, and the preprocessing job's own small files (its
``config.yaml``, its input listings). Everything is a ``pyarrow.fs`` file system chosen from
the path by :func:`filesystem`: local paths (and ``file://``), and any URI pyarrow knows
(``s3://bucket/out`` through ``pyarrow.fs.S3FileSystem``, configured by the usual AWS
variables: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``). Listings of a remote folder return URIs, so every path handed on
names its file system; :func:`is_remote` is the only test of "is this a URI" in the project.

Writes are atomic: a local file is written to a hidden tmp name in the same folder and renamed
when whole (:func:`atomic_path`, used by :func:`write_bytes` and every other local writer,
e.g. ``shards.video.write_video``); an object is written by one PUT, which S3 makes visible
whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from shards.schema import TMP_SUFFIX

PathLike = str | os.PathLike[str]

__all__ = [
    "Entry",
    "PathLike",
    "as_uri",
    "atomic_path",
    "canonical",
    "delete",
    "exists",
    "filesystem",
    "is_dir",
    "is_remote",
    "is_tmp_name",
    "list_dir",
    "list_files",
    "local_path",
    "make_dirs",
    "open_input",
    "read_bytes",
    "read_text",
    "upload",
    "uri_join",
    "write_bytes",
    "write_text",
]


# -- names ---------------------------------------------------------------------------------


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` is a URI of a non-local file system (``s3://...``)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def filesystem(path: PathLike) -> tuple[pafs.FileSystem, str]:
    """(file system, path in it) of a local path or a URI (``s3://bucket/key``)."""
    text = str(path)
    if not is_remote(text):
        return pafs.LocalFileSystem(), str(Path(text.removeprefix("file://")).resolve())
    try:
        fs, inner = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ValueError(f"{text}: not a file system URI pyarrow can open ({exc})") from exc
    return fs, inner.rstrip("/")


def uri_join(root: PathLike, *parts: str) -> str:
    """``root/part/...`` for a local path or a URI."""
    return "/".join([str(root).rstrip("/"), *parts])


def as_uri(like: PathLike, path: str) -> str:
    """A path of ``like``'s file system (e.g. from a listing) as something this module opens."""
    text = str(like)
    return f"{text.split('://', 1)[0]}://{path}" if is_remote(text) else path


def local_path(path: PathLike) -> Path:
    """A local path (``file://`` removed) as a Path; ValueError for a remote URI."""
    if is_remote(path):
        raise ValueError(f"{path}: a remote URI, not a local path")
    return Path(str(path).removeprefix("file://"))


def canonical(path: PathLike) -> str:
    """The absolute form of a local path, or the URI without a trailing slash."""
    text = str(path)
    return text.rstrip("/") if is_remote(text) else filesystem(text)[1]


def is_tmp_name(name: str) -> bool:
    """Whether a file name is a writer's hidden tmp file (``.NAME.tmp``, ``.NAME.X.tmp.EXT``)."""
    return name.startswith(".") and (name.endswith(TMP_SUFFIX) or f"{TMP_SUFFIX}." in name)


# -- queries -------------------------------------------------------------------------------


def _type(path: PathLike) -> pafs.FileType:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type


def exists(path: PathLike) -> bool:
    """Whether a file or a folder (a non-empty prefix, for object stores) is there."""
    return bool(_type(path) != pafs.FileType.NotFound)


def is_dir(path: PathLike) -> bool:
    """Whether ``path`` is a folder (for object stores: a prefix holding objects)."""
    return bool(_type(path) == pafs.FileType.Directory)


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing."""

    name: str
    """Base name (``shard-000000.tar``)."""
    path: str
    """Local path or URI, opened again by this module."""
    is_file: bool


def list_dir(folder: PathLike, *, hidden: bool = False) -> list[Entry]:
    """The entries directly in ``folder``, sorted by name; [] when it does not exist.
    Hidden names (``.NAME``: tmp files, staging) are left out unless ``hidden``."""
    fs, base = filesystem(folder)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    entries = [
        Entry(i.base_name, as_uri(folder, i.path), i.type == pafs.FileType.File)
        for i in infos
        if hidden or not i.base_name.startswith(".")
    ]
    return sorted(entries, key=lambda e: e.name)


def list_files(path: PathLike) -> list[str] | None:
    """Every file below a folder or prefix, sorted; None when ``path`` is a single file.

    Hidden names (a part starting with ``.``) are left out. FileNotFoundError when nothing
    is there.
    """
    fs, base = filesystem(path)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File:
        return None
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"input {str(path)!r}: no such object or prefix")
    found = []
    for entry in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        rel = entry.path[len(base) :].lstrip("/")
        if entry.type == pafs.FileType.File and not any(p.startswith(".") for p in rel.split("/")):
            found.append(as_uri(path, entry.path))
    return sorted(found)


# -- reading -------------------------------------------------------------------------------


def open_input(path: PathLike) -> pa.NativeFile:
    """A file or object opened for sequential reading (a binary file object; close it)."""
    fs, inner = filesystem(path)
    return fs.open_input_stream(inner)


def read_bytes(path: PathLike) -> bytes:
    """The whole file or object; FileNotFoundError when there is none."""
    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type != pafs.FileType.File:
        raise FileNotFoundError(f"no such file: {path}")
    with fs.open_input_stream(inner) as f:
        data: bytes = f.read()
    return data


def read_text(path: PathLike) -> str | None:
    """A UTF-8 text file's content, or None when it does not exist."""
    try:
        return read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        return None


# -- writing -------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Write a local file atomically: yields a hidden tmp path in the same folder for the
    caller to write; on success it is fsynced and renamed to ``path`` (replacing any old
    file), on an exception deleted. Readers never see a partial file. A folder works too
    (create it at the tmp path; it replaces no existing non-empty folder).

    The tmp name ``.NAME.RANDOM.tmp.EXT`` keeps the extension (for libraries that pick a
    format from it) and is unique, so concurrent writers of one file do not collide. The
    parent folder is created if needed.

        with atomic_path("out/result.png") as tmp:
            cv2.imwrite(str(tmp), image)
    """
    if is_remote(path):
        raise ValueError(f"{path}: atomic_path writes local files; use write_bytes for URIs")
    final = local_path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{TMP_SUFFIX}{final.suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write a whole file: locally through :func:`atomic_path`, remotely as one PUT."""
    if not is_remote(path):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return
    fs, inner = filesystem(path)
    with fs.open_output_stream(inner) as f:
        f.write(data)


def write_text(path: PathLike, text: str) -> None:
    """Write a whole UTF-8 text file atomically (see :func:`write_bytes`)."""
    write_bytes(path, text.encode("utf-8"))


def upload(local: Path, path: PathLike) -> None:
    """Copy a finished local file to ``path`` (a URI: one streamed PUT; local: atomic copy)."""
    if not is_remote(path):
        with atomic_path(path) as tmp:
            shutil.copyfile(local, tmp)
        return
    fs, inner = filesystem(path)
    with open(local, "rb") as src, fs.open_output_stream(inner) as dst:
        shutil.copyfileobj(src, dst, 8 << 20)


def delete(path: PathLike) -> None:
    """Delete a file or object; nothing when there is none."""
    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type == pafs.FileType.File:
        fs.delete_file(inner)


def make_dirs(path: PathLike) -> None:
    """Create a local folder and its parents (object stores need none)."""
    if not is_remote(path):
        local_path(path).mkdir(parents=True, exist_ok=True)
