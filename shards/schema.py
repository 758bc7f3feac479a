"""The dataset contract (DESIGN §4): one WebDataset sample per clip, Parquet rows beside it.

On disk, under a preprocessing output ``OUT``::

    OUT/config.yaml                      resolved preprocessing config of the run
    OUT/shards/shard-000000.tar          WebDataset shards (whole clips; written then renamed)
    OUT/stats/clips/shard-000000.parquet one row per clip of that shard (written with it)
    OUT/stats/videos/*.parquet           one row per input video (ok / failed / skipped)

Field names and encodings of a sample (the extension decides the decoder; see ``codec.py``):

=============  ===============================================================================
``mp4``        frames ``(T, H, W, 3)`` RGB, H.264 (libx264, CRF from the config), yuv420p
``pose.npy``   keypoints ``(T, P, 133, 3)`` float32 (x, y, score), stored pixels
``flow.npz``   backward flow ``(T, h, w, 2)`` float16, stored pixels per frame, deflated
``depth.npz``  relative inverse depth ``(T, h, w)`` float16 in [0, 1] per frame (optional)
``mask.npz``   union dilation mask ``(T, h, w)`` uint8 0/1, deflated
``order.npz``  depth-order map ``(T, h, w)`` uint8, deflated
``ranks.npy``  ``(T, P)`` int8, -1 where the track is absent
``json``       metadata (see :class:`Sample.meta`)
=============  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa

SHARDS_DIR = "shards"
CLIPS_DIR = "stats/clips"
VIDEOS_DIR = "stats/videos"
CONFIG_FILE = "config.yaml"

FIELDS = ("mp4", "pose.npy", "flow.npz", "depth.npz", "mask.npz", "order.npz", "ranks.npy", "json")
REQUIRED_FIELDS = tuple(f for f in FIELDS if f != "depth.npz")

NUM_KEYPOINTS = 133


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
    """``ok`` | ``failed`` | ``skipped``."""
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
