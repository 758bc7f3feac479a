"""The dataset contract (docs/design.md §4): one WebDataset sample per clip, Parquet rows beside it.

On disk, under a preprocessing output ``OUT`` (details and crash semantics: docs/shards.md)::

    OUT/config.yaml                       resolved preprocessing config of the run
    OUT/shards/shard-000000.tar           WebDataset shards (whole clips; written then renamed)
    OUT/stats/clips/shard-000000.parquet  one row per clip of that shard (written with it)
    OUT/stats/videos/shard-000000.parquet one row per input video (ok / failed / skipped),
                                          flushed when the shard of its last clip closes
    OUT/.staging/                         the writer's per-video staging tars (private)

Names are ``{prefix}-{NNNNNN}`` with ``prefix`` = ``shard`` unless a writer is given another
one (one per concurrent writer); numbers continue after those already in the output. Files
being written are hidden ``.NAME.tmp`` files in the same folder and are renamed when whole.
A shard exists for readers once its clips Parquet file exists.

Field names and encodings of a sample (the extension decides the decoder; see ``codec.py``):

=============  ===============================================================================
``mp4``        frames ``(T, H, W, 3)`` RGB, H.264 (libx264, CRF from the config), yuv420p
``pose.npy``   keypoints ``(T, P, 133, 3)`` float32 (x, y, score), stored pixels
``flow.npz``   backward flow ``(T, h, w, 2)`` float16, stored pixels per frame, deflated
``depth.npz``  relative inverse depth ``(T, h, w)`` float16 in [0, 1] per frame (optional)
``mask.npz``   union dilation mask ``(T, h, w)`` uint8 0/1, deflated
``order.npz``  depth-order map ``(T, h, w)`` uint8, deflated
``ranks.npy``  ``(T, P)`` int8, -1 where the track is absent
``json``       metadata (see :class:`Sample.meta`) and ``format_version``
=============  ===============================================================================

The layout and encodings above are version :data:`FORMAT_VERSION` of the output format. A
file of an output records it (:func:`with_format_version` when writing; every sample's
``json`` gets it from ``codec.encode_sample``) and readers check it
(:func:`check_format_version`, in ``codec.decode_sample`` and ``validate``), refusing data of
an older or newer format with a message saying what to do. A change of the format bumps it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa

FORMAT_VERSION = 1
"""Version of the preprocessing output format (this module and ``codec.py``)."""
FORMAT_VERSION_KEY = "format_version"

SHARDS_DIR = "shards"
CLIPS_DIR = "stats/clips"
VIDEOS_DIR = "stats/videos"
CONFIG_FILE = "config.yaml"
STAGING_DIR = ".staging"
SHARD_PREFIX = "shard"
TMP_SUFFIX = ".tmp"

FIELDS = ("mp4", "pose.npy", "flow.npz", "depth.npz", "mask.npz", "order.npz", "ranks.npy", "json")
REQUIRED_FIELDS = tuple(f for f in FIELDS if f != "depth.npz")

NUM_KEYPOINTS = 133

VIDEO_STATUSES = ("ok", "failed", "skipped")

KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
"""A sample key (use with ``fullmatch``): letters, digits, ``_`` and ``-`` only. WebDataset
splits a tar member name at its first dot into key and field, so a key can hold no dot, slash
or path."""

NAME_RE = re.compile(r"(?P<prefix>[A-Za-z0-9_-]+)-(?P<number>\d{6,})")
"""A shard stem ``{prefix}-{NNNNNN}`` (use with ``fullmatch``)."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid sample key, else raise ValueError saying why."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise ValueError(
            f"invalid sample key {key!r}: use 1-200 of [A-Za-z0-9_-] (no dots, slashes or "
            "paths; hash the source instead)"
        )
    return key


class FormatVersionError(ValueError):
    """Data written in another version of the output format than this code reads."""


def with_format_version(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (a sample's metadata, an output's config) with ``format_version``."""
    rest = {k: v for k, v in data.items() if k != FORMAT_VERSION_KEY}
    return {FORMAT_VERSION_KEY: FORMAT_VERSION, **rest}


def check_format_version(data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``data`` without its ``format_version`` once that is the version this code reads;
    else :class:`FormatVersionError` naming ``what`` (e.g. ``"sample KEY of OUT/shards/..."``),
    the version read, the version this code reads, and what to do."""
    rest = {k: v for k, v in data.items() if k != FORMAT_VERSION_KEY}
    version = data.get(FORMAT_VERSION_KEY)
    reads = f"this code reads format version {FORMAT_VERSION}"
    redo = "re-run preprocessing (python -m preprocess) into a new output folder"
    if version is None:
        raise FormatVersionError(
            f"{what}: no format_version (written before output formats were versioned); "
            f"{reads}: {redo}"
        )
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatVersionError(f"{what}: format_version {version!r} is not a number; {reads}")
    if version < FORMAT_VERSION:
        raise FormatVersionError(
            f"{what}: format version {version} is older than this code reads; {reads}: {redo}"
        )
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{what}: format version {version} is newer than this code reads; {reads}: "
            "upgrade mcanim to read it (or re-run preprocessing with this version)"
        )
    return rest


def shard_name(prefix: str, number: int) -> str:
    """Stem of a shard and of its Parquet files: ``shard_name("shard", 3) == "shard-000003"``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise ValueError(f"invalid shard prefix {prefix!r}: use [A-Za-z0-9_-]")
    return f"{prefix}-{number:06d}"


@dataclass
class Sample:
    """One clip, decoded."""

    key: str
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB at the stored resolution."""
    fps: float
    pose: np.ndarray
    """(T, P, 133, 3) float32 (x, y, score) in stored pixels; score 0 where a track is absent."""
    flow: np.ndarray
    """(T, h, w, 2) float32 backward flow in stored pixels per frame (F_0 = 0)."""
    mask: np.ndarray
    """(T, h, w) bool union skeletal dilation mask."""
    order: np.ndarray
    """(T, h, w) uint8 depth-order map."""
    ranks: np.ndarray
    """(T, P) int8 rank per track, -1 where absent."""
    meta: dict[str, Any] = field(default_factory=dict)
    """JSON metadata: ``source``, ``video_id``, ``clip_index``, ``source_frames`` (list),
    ``fps``, ``width``, ``height``, ``map_width``, ``map_height``, ``stats`` (the clip row's
    statistics), ``config`` (resolved preprocessing config) and ``backends`` (name, model path,
    sha256 of each extractor)."""
    depth: np.ndarray | None = None
    """(T, h, w) float32 relative inverse depth normalised per frame, or None."""


@dataclass
class ClipRow:
    """One row of ``stats/clips``."""

    key: str
    shard: str
    """Shard file name relative to ``OUT/shards`` (e.g. ``shard-000000.tar``)."""
    video_id: str
    source: str
    clip_index: int
    start_frame: int
    """First source frame of the clip."""
    end_frame: int
    """Last source frame of the clip (inclusive)."""
    n_frames: int
    fps: float
    width: int
    height: int
    map_width: int
    map_height: int
    n_tracks: int
    bg_flow_mean: float | None
    bg_flow_p95: float | None
    occlusion_rate_mean: float | None
    occlusion_rate_max: float | None
    characters_max: int
    characters_mode: int
    multi_character_frac: float
    pose_score_mean: float | None
    seconds_decode: float = 0.0
    seconds_pose: float = 0.0
    seconds_flow: float = 0.0
    seconds_depth: float = 0.0
    seconds_geometry: float = 0.0
    seconds_encode: float = 0.0


@dataclass
class VideoRow:
    """One row of ``stats/videos``."""

    video_id: str
    source: str
    status: str
    """``ok`` | ``failed`` | ``skipped`` (``VIDEO_STATUSES``)."""
    error_stage: str | None = None
    error: str | None = None
    n_clips: int = 0
    n_frames: int = 0
    """Stored frames in the video's clips."""
    duration_s: float | None = None
    """Source duration in seconds (frames / fps as reported by the container)."""
    src_width: int | None = None
    src_height: int | None = None
    src_fps: float | None = None
    src_frames: int | None = None
    rotation: int | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    bg_flow_mean: float | None = None
    occlusion_rate_mean: float | None = None
    characters_max: int | None = None
    multi_character_frac: float | None = None
    seconds: float = 0.0
    """Wall time spent on the video."""


def _arrow_type(annotation: str) -> pa.DataType:
    base = annotation.replace(" | None", "")
    return {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}[base]


def arrow_schema(row_type: type) -> pa.Schema:
    """Parquet schema of a row dataclass (nullable exactly where the field may be None)."""
    return pa.schema(
        [
            pa.field(f.name, _arrow_type(str(f.type)), nullable="None" in str(f.type))
            for f in fields(row_type)
        ]
    )


CLIP_SCHEMA = arrow_schema(ClipRow)
VIDEO_SCHEMA = arrow_schema(VideoRow)


def row_dict(row: ClipRow | VideoRow) -> dict[str, Any]:
    """A row as a plain dict for Parquet: NaN becomes null where the column is nullable.

    Raises ValueError naming the column when a non-nullable column is None or NaN, so that a
    bad row fails when it is added, not when its shard is closed.
    """
    schema = CLIP_SCHEMA if isinstance(row, ClipRow) else VIDEO_SCHEMA
    out = asdict(row)
    for f in schema:
        value = out[f.name]
        if isinstance(value, float) and math.isnan(value):
            value = None
        if value is None and not f.nullable:
            raise ValueError(f"{type(row).__name__}.{f.name} must not be None/NaN")
        out[f.name] = value
    return out


def rows_to_table(rows: Sequence[ClipRow | VideoRow], schema: pa.Schema) -> pa.Table:
    """Rows (all of the type that ``schema`` describes) as an Arrow table of ``schema``."""
    return pa.Table.from_pylist([row_dict(r) for r in rows], schema=schema)
