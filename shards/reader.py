"""Reading an output: its shards, its Parquet statistics (filtered with SQL) and its samples.

Every file is opened through ``shards.storage`` (local paths and ``s3://`` URIs alike; a
listing of a remote root returns URIs, so every path handed on names its file system);
``is_remote``, ``filesystem`` and ``uri_join`` are re-exported from there for older imports.
Reading writes nothing: DuckDB runs in memory with file access and spilling disabled, and
the webdataset pipeline here has no shard cache (``wds.WebDataset`` would cache shards when
``WDS_CACHE`` is set).

A shard belongs to the output once its clips Parquet file exists (see ``writer.py``); a tar
without one is an orphan left by a crash and is not read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from shards.codec import decode_sample
from shards.schema import (
    CLIP_SCHEMA,
    CLIPS_DIR,
    FIELDS,
    SHARDS_DIR,
    VIDEO_SCHEMA,
    VIDEOS_DIR,
    Sample,
)
from shards.storage import filesystem, is_dir, is_remote, list_dir, open_input, uri_join

log = logging.getLogger(__name__)

PathLike = str | Path

__all__ = [
    "WhereError",
    "clip_files",
    "filesystem",
    "filter_table",
    "is_remote",
    "iter_raw",
    "iter_samples",
    "read_clips",
    "read_videos",
    "shard_paths",
    "uri_join",
    "video_files",
]


class WhereError(ValueError):
    """A ``where`` expression that DuckDB cannot evaluate over the table."""


def _list(root: PathLike, sub: str, suffix: str) -> list[str]:
    """Sorted visible files ``root/sub/*{suffix}`` (no hidden tmp files), as paths or URIs."""
    if not is_dir(root):
        raise FileNotFoundError(f"{root}: no such output folder")
    entries = list_dir(uri_join(root, sub))
    return [e.path for e in entries if e.is_file and e.name.endswith(suffix)]


def clip_files(root: PathLike) -> list[str]:
    """Parquet files of the clips table (one per shard)."""
    return _list(root, CLIPS_DIR, ".parquet")


def video_files(root: PathLike) -> list[str]:
    """Parquet files of the videos table."""
    return _list(root, VIDEOS_DIR, ".parquet")


def shard_paths(root: PathLike) -> list[str]:
    """Paths of the output's shards (tars with their clips Parquet file), sorted by name."""
    committed = {Path(p).stem for p in clip_files(root)}
    tars = _list(root, SHARDS_DIR, ".tar")
    orphans = [t for t in tars if Path(t).stem not in committed]
    if orphans:
        log.warning("%d shard(s) without clips Parquet are ignored: %s", len(orphans), orphans[:3])
    return [t for t in tars if Path(t).stem in committed]


def read_clips(
    root: PathLike, where: str | None = None, columns: list[str] | None = None
) -> pa.Table:
    """The clips table (one row per clip, ``CLIP_SCHEMA``), optionally filtered by ``where``."""
    return _read(root, clip_files(root), CLIP_SCHEMA, "clips", where, columns)


def read_videos(
    root: PathLike, where: str | None = None, columns: list[str] | None = None
) -> pa.Table:
    """The videos table (one row per input, ``VIDEO_SCHEMA``), optionally filtered."""
    return _read(root, video_files(root), VIDEO_SCHEMA, "videos", where, columns)


def _read(
    root: PathLike,
    files: list[str],
    schema: pa.Schema,
    name: str,
    where: str | None,
    columns: list[str] | None,
) -> pa.Table:
    if files:
        fs, _ = filesystem(root)
        paths = [filesystem(f)[1] for f in files]
        table = pads.dataset(paths, schema=schema, format="parquet", filesystem=fs).to_table()
    else:
        table = schema.empty_table()
    if where:
        table = filter_table(table, where, name)
    return table.select(columns) if columns is not None else table


def filter_table(table: pa.Table, where: str, name: str = "table") -> pa.Table:
    """Rows of ``table`` for which the SQL boolean expression ``where`` is true (DuckDB).

    ``where`` is one expression over the table's columns, e.g.
    ``bg_flow_mean < 20 and characters_max >= 1``; rows where it is NULL are dropped.
    Raises :class:`WhereError` naming the columns when DuckDB cannot evaluate it.
    """
    with duckdb.connect() as con:
        # Applied as ordered statements: the order of a connect(config=...) dict is not kept
        # once decord is imported, and the temp directory cannot change after file access is
        # disabled. No temp directory (nothing spills to disk), then no file access at all.
        con.execute("SET temp_directory = ''")
        con.execute("SET enable_external_access = false")
        try:
            result = con.from_arrow(table).filter(where).to_arrow_table()
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            columns = ", ".join(table.column_names)
            raise WhereError(
                f"cannot filter the {name} table with {where!r}: {message}\n"
                f"columns of the {name} table: {columns}"
            ) from None
    return result.cast(table.schema)


def iter_samples(
    source: PathLike | Iterable[PathLike],
    fields: Collection[str] | None = None,
    keys: Collection[str] | None = None,
) -> Iterator[Sample]:
    """Decoded samples of an output root (its shards in order) or of a list of shard paths.

    ``fields`` limits decoding to those ``FIELDS`` (see ``codec.decode_sample``: the others
    stay empty); their bytes are not even read from the tar. ``keys`` keeps only those
    samples; with a root, only the shards that hold them are opened.
    """
    if fields is not None and set(fields) - set(FIELDS):
        raise ValueError(f"unknown fields {sorted(set(fields) - set(FIELDS))}; see {FIELDS}")
    wanted = None if keys is None else set(keys)
    if isinstance(source, str | Path):
        urls = shard_paths(source)
        if wanted is not None:
            urls = _shards_holding(source, wanted, urls)
    else:
        urls = [str(p) if is_remote(p) else filesystem(p)[1] for p in source]
    keep = None if fields is None else {*fields, "json"}
    for raw in iter_raw(urls, _selector(wanted, keep)):
        yield decode_sample(raw, fields)


def iter_raw(
    urls: list[str], select_files: Callable[[str], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Raw WebDataset samples (``__key__``, ``__url__`` and field bytes) of shards (paths/URIs).

    A plain webdataset pipeline: shard list -> open -> tar members -> samples grouped by key.
    """
    import webdataset as wds  # imports torch: only where shards are read (not in Ray workers)
    from webdataset.tariterators import group_by_keys, tar_file_expander

    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        _open_shards,
        wds.pipelinefilter(tar_file_expander)(select_files=select_files),
        wds.pipelinefilter(group_by_keys)(),
    )
    yield from pipeline


def _open_shards(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Open each shard for streaming, and close it once its samples have been read."""
    for item in items:
        with open_input(item["url"]) as stream:
            yield {**item, "stream": stream}


def _selector(keys: set[str] | None, fields: set[str] | None) -> Callable[[str], bool] | None:
    """Tar member filter: ``KEY.FIELD`` is read only for wanted keys and fields."""
    if keys is None and fields is None:
        return None

    def select(fname: str) -> bool:
        key, _, field = Path(fname).name.partition(".")
        return (keys is None or key in keys) and (fields is None or field in fields)

    return select


def _shards_holding(root: PathLike, keys: set[str], urls: list[str]) -> list[str]:
    table = read_clips(root, columns=["key", "shard"])
    pairs = zip(table["key"].to_pylist(), table["shard"].to_pylist(), strict=True)
    names = {shard for key, shard in pairs if key in keys}
    return [u for u in urls if Path(u).name in names]
