"""Local paths and object-storage URIs (``s3://bucket/key``) for the job's own small files.

Everything goes through ``shards.reader.filesystem`` (pyarrow file systems: local, and S3
configured by the usual ``AWS_*`` variables, e.g. ``AWS_ENDPOINT_URL`` for a non-AWS
endpoint), so the job, the shard writer and the readers agree on what a URI means.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs

from shards.reader import filesystem, is_remote, uri_join

__all__ = ["is_remote", "list_files", "make_dirs", "read_bytes", "read_text", "uri_join"]


def read_bytes(uri: str) -> bytes:
    """The whole object or file; FileNotFoundError when there is none."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"no such file: {uri}")
    with fs.open_input_stream(path) as f:
        data: bytes = f.read()
    return data


def read_text(uri: str) -> str | None:
    """A text file's content, or None when it does not exist."""
    try:
        return read_bytes(uri).decode("utf-8")
    except FileNotFoundError:
        return None


def write_text(uri: str, text: str) -> None:
    """Write a whole text file: locally to a tmp name then renamed, remotely as one PUT."""
    if not is_remote(uri):
        path = Path(uri)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return
    fs, path_in_fs = filesystem(uri)
    with fs.open_output_stream(path_in_fs) as f:
        f.write(text.encode("utf-8"))


def make_dirs(uri: str) -> None:
    """Create a local output folder (object stores need none)."""
    if not is_remote(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)


def list_files(uri: str) -> list[str] | None:
    """Every file below a remote prefix as URIs, sorted; None when ``uri`` is a single file.

    Hidden names (a part starting with ``.``) are left out, as for local folders.
    """
    fs, base = filesystem(uri)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File:
        return None
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"input {uri!r}: no such object or prefix")
    scheme = uri.split("://", 1)[0]
    found = []
    for entry in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        rel = entry.path[len(base) :].lstrip("/")
        if entry.type == pafs.FileType.File and not any(p.startswith(".") for p in rel.split("/")):
            found.append(f"{scheme}://{entry.path}")
    return sorted(found)
