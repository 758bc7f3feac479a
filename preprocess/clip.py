"""What flows through the preprocessing stages: a video's identity and its clips.

A :class:`Clip` is created by decoding and filled in by each stage of ``preprocess.stages``
in turn (encode: its mp4; pose, flow, depth; geometry: a
:class:`~preprocess.geometry.clip.ClipGeometry`); the
pack stage leaves an :class:`EncodedClip` on it, the one WebDataset sample and Parquet row
that the shard writer receives. Stages report failures as :class:`StageError` with the stage's
name, so a bad video becomes a ``failed`` row.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from preprocess.geometry.clip import ClipGeometry
from shards.schema import ClipRow


def video_id_for(source: str) -> str:
    """Stable id of a source video: a hash of its canonical URI (never the raw path)."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def clip_key(video_id: str, start_frame: int) -> str:
    """WebDataset ``__key__`` of a clip: the video's id and the clip's first source frame."""
    return f"{video_id}_{start_frame:07d}"


@dataclass
class VideoInfo:
    """A decoded video's identity and geometry (sizes after rotation)."""

    source: str
    """Canonical URI of the input (absolute path or ``s3://...``)."""
    video_id: str
    src_width: int
    src_height: int
    src_fps: float
    src_frames: int
    """Frame count reported by the container (may be approximate for broken files)."""
    rotation: int
    """Clockwise display rotation in degrees applied to the decoded frames (0/90/180/270)."""
    width: int
    """Stored width (even)."""
    height: int
    """Stored height (even)."""
    fps: float
    """Stored frame rate (source rate capped at ``decode.max_fps``)."""
    codec: str = ""

    @property
    def scale(self) -> float:
        """Stored pixels per source pixel."""
        return self.width / self.src_width


@dataclass
class EncodedClip:
    """A clip ready for the shard writer: its encoded fields and its Parquet row."""

    key: str
    fields: dict[str, Any]
    """WebDataset fields (``mp4``, ``pose.npy``, ...) as bytes, from ``shards.codec``."""
    row: ClipRow
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage (also in the row's ``seconds_*`` columns where it has one)."""


@dataclass
class Clip:
    """A contiguous run of stored frames of one video within one shot."""

    video: VideoInfo
    index: int
    """Position of the clip within its video (0, 1, ...)."""
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB at the stored resolution; (T, 0, 0, 3) once no later stage
    reads them (the Ray job ships a clip's pixels only as far as its last model stage)."""
    source_frames: np.ndarray
    """(T,) int64: index of each stored frame in the source video."""
    keypoints: np.ndarray | None = None
    """(T, P, 133, 3) float32 tracked keypoints (x, y, score) in stored pixels."""
    flow: np.ndarray | None = None
    """(T, h, w, 2) float32 backward flow F_i in stored pixels per frame; F_0 = 0."""
    depth: np.ndarray | None = None
    """(T, h, w) float32 relative inverse depth normalised per frame, or None (heuristic)."""
    geometry: ClipGeometry | None = None
    mp4: bytes | None = None
    """The frames as H.264 MP4, set by the encode stage (the first after decoding)."""
    encoded: EncodedClip | None = None
    """The sample's fields and row, set by the pack stage, the last one."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time spent per stage on this clip."""

    @property
    def key(self) -> str:
        return clip_key(self.video.video_id, int(self.source_frames[0]))

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


class StageError(RuntimeError):
    """A stage failed on one video; recorded as a ``failed`` row, never raised out of a run."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"[{stage}] {message}")
        self.stage = stage
        self.message = message


@contextlib.contextmanager
def stage(name: str, seconds: dict[str, float] | None = None) -> Iterator[None]:
    """Run a block as stage ``name``: turn any exception into a StageError naming it, and add
    the block's wall time to ``seconds[name]`` when given."""
    start = time.perf_counter()
    try:
        yield
    except StageError:
        raise
    except Exception as exc:
        raise StageError(name, f"{type(exc).__name__}: {exc}") from exc
    finally:
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
