"""The one video I/O module (PyAV): H.264 to and from bytes, video files written and read.

Frames are always ``(T, H, W, 3)`` uint8 RGB. :func:`encode_h264` / :func:`decode_h264` are
the shard format's ``mp4`` field (``codec.encode_frames`` / ``decode_frames``);
:func:`write_video` writes the same bytes to a file atomically (a generated animation, a
validation grid); :func:`read_video` / :func:`probe_video` read any video FFmpeg reads, from a
local path or a URI of ``shards.storage`` (``s3://...``).

H.264 here means libx264, yuv420p (so H and W must be even), ``crf`` (0..51, lower is better)
and ``preset`` as x264 knows them, in an MP4 container; the frame rate is stored in the stream
as the nearest fraction with denominator <= 1001 (:func:`fps_fraction`), so 29.97 and
30000/1001 survive exactly. ``threads`` is x264's thread count (0: x264's own choice, about
1.5 per core); it changes speed, not the picture's quality. The size/speed/quality trade-off
of the presets and CRFs is measured by ``benchmarks/encoder.py`` (table in docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from shards.storage import PathLike, atomic_path, is_remote, local_path, read_bytes, write_bytes

FPS_MAX_DENOMINATOR = 1001
DEFAULT_FPS = 30.0
"""Frame rate assumed by :func:`read_video` / :func:`probe_video` when the stream has none."""


def fps_fraction(fps: float) -> Fraction:
    """The frame rate as stored in the stream: nearest fraction with denominator <= 1001."""
    return Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)


def encode_h264(
    frames: np.ndarray, fps: float, crf: int = 18, preset: str = "medium", threads: int = 0
) -> bytes:
    """``(T, H, W, 3)`` uint8 RGB frames -> H.264 MP4 bytes (yuv420p, so H and W must be even);
    ``threads`` x264 threads (0: x264 decides)."""
    _check(frames.dtype == np.uint8, f"frames must be uint8, got {frames.dtype}")
    _check(
        frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[0] >= 1,
        f"frames must be (T >= 1, H, W, 3) RGB, got {frames.shape}",
    )
    h, w = frames.shape[1:3]
    _check(
        h % 2 == 0 and w % 2 == 0,
        f"H.264 yuv420p needs even frame sizes, got {w}x{h} (W x H); crop or resize the clip "
        "to even sizes before encoding",
    )
    _check(math.isfinite(fps) and fps > 0, f"fps must be a positive number, got {fps}")
    _check(0 <= int(crf) <= 51, f"crf must be in 0..51, got {crf}")
    _check(int(threads) >= 0, f"threads must be >= 0 (0: x264 decides), got {threads}")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps_fraction(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset, "threads": str(int(threads))}
        for frame in frames:  # (H, W, 3)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def decode_h264(data: bytes) -> tuple[np.ndarray, float]:
    """MP4 bytes -> (``(T, H, W, 3)`` uint8 RGB frames, fps stored in the stream)."""
    with av.open(io.BytesIO(data), "r") as container:
        _check(len(container.streams.video) > 0, "mp4 field has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        rate = stream.average_rate or stream.guessed_rate
    _check(len(frames) > 0, "mp4 field holds no frames")
    return np.stack(frames), float(rate) if rate else 0.0


def write_video(
    path: PathLike, frames: np.ndarray, fps: float, crf: int = 18, preset: str = "medium"
) -> None:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as an H.264 MP4 file, atomically: the file
    appears whole under ``path`` or not at all (``storage.atomic_path``); parent folders are
    created. A URI (``s3://...``) is uploaded as one object."""
    data = encode_h264(frames, fps, crf, preset)
    if is_remote(path):
        write_bytes(path, data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def _open(path: PathLike) -> Iterator[Any]:
    """An open PyAV input container of a local path, or of a URI's object fetched whole."""
    source: Any = io.BytesIO(read_bytes(path)) if is_remote(path) else str(local_path(path))
    with av.open(source) as container:
        yield container


def read_video(path: PathLike, max_frames: int = 0) -> tuple[np.ndarray, float]:
    """(``(T, H, W, 3)`` uint8 RGB frames, at most ``max_frames`` (0: all), and the frame
    rate (30 when the stream has none)) of the first video stream of a file or URI."""
    with _open(path) as container:
        _check(len(container.streams.video) > 0, f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or DEFAULT_FPS)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
            if max_frames and len(frames) >= max_frames:
                break
    _check(len(frames) > 0, f"{path}: no video frames")
    return np.stack(frames), fps


def probe_video(path: PathLike) -> tuple[tuple[int, int], float]:
    """((height, width), frame rate (30 when the stream has none)) of a video, not decoded."""
    with _open(path) as container:
        _check(len(container.streams.video) > 0, f"{path}: no video stream")
        stream = container.streams.video[0]
        return (stream.height, stream.width), float(stream.average_rate or DEFAULT_FPS)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
