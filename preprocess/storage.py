"""Moved to :mod:`shards.storage` (the one storage layer for local paths and ``s3://``).

A re-export kept while ``preprocess.discover``, ``preprocess.decode`` and
``preprocess.pipeline`` still import from here; the re-layout removes it.
"""

from __future__ import annotations

from shards.storage import (
    is_remote,
    list_files,
    make_dirs,
    read_bytes,
    read_text,
    uri_join,
    write_text,
)

__all__ = [
    "is_remote",
    "list_files",
    "make_dirs",
    "read_bytes",
    "read_text",
    "uri_join",
    "write_text",
]
