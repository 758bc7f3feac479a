"""Inputs of a run: a directory, a glob, a list file, or single files -> source URIs.

A directory is walked recursively and every regular, non-hidden file in it is an input (a
file that is not a video becomes a ``failed`` row saying so, rather than vanishing silently);
pose sidecars (``*.pose.npz``) and list files are companions, not inputs. A ``.txt``/``.lst``
file holds one path or URI per line (``#`` comments allowed). Sources are canonical: local
paths are made absolute, so a video's id is the same however it was named on the command line.
A URI (``s3://bucket/videos/``) names one object, or a prefix listed recursively like a folder.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from shards.storage import canonical, is_remote, list_files, local_path

LIST_SUFFIXES = (".txt", ".lst", ".list")
COMPANION_SUFFIXES = (".pose.npz",)


def canonical_source(path_or_uri: str) -> str:
    """Absolute local path (``~`` expanded), or the URI unchanged for ``scheme://`` inputs."""
    if is_remote(path_or_uri):
        return path_or_uri
    return canonical(local_path(path_or_uri).expanduser())


def _walk(directory: Path) -> list[str]:
    """Every regular file below ``directory`` except hidden ones and companions."""
    found = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        hidden = any(part.startswith(".") for part in rel.parts)
        companion = any(path.name.endswith(s) for s in COMPANION_SUFFIXES)
        if path.is_file() and not hidden and not companion:
            found.append(canonical_source(str(path)))
    return sorted(found)


def _read_list(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    base = path.parent
    return [canonical_source(x if is_remote(x) else str(base / x)) for x in lines if x]


def _list_uri(uri: str) -> list[str]:
    """The object ``uri``, or every non-hidden, non-companion object below the prefix ``uri``.
    A scheme pyarrow cannot list is taken as one object (decoding then says why it fails)."""
    try:
        listed = list_files(uri)
    except ValueError:
        return [uri]
    if listed is None:
        return [uri]
    return [u for u in listed if not any(u.endswith(s) for s in COMPANION_SUFFIXES)]


def discover(inputs: Iterable[str]) -> list[str]:
    """Expand ``inputs`` into a sorted, de-duplicated list of canonical source URIs."""
    found: list[str] = []
    for item in inputs:
        if is_remote(item):
            found.extend(_list_uri(item))
            continue
        path = local_path(item).expanduser()
        if path.is_dir():
            found.extend(_walk(path))
        elif path.is_file() and path.suffix in LIST_SUFFIXES:
            found.extend(_read_list(path))
        elif path.is_file():
            found.append(canonical_source(item))
        else:
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise FileNotFoundError(f"input {item!r} is not a file, directory or matching glob")
            found.extend(canonical_source(m) for m in matches if Path(m).is_file())
    return sorted(dict.fromkeys(found))
