"""Decode stage: raw video -> stored-resolution clips that never cross a shot cut.

``probe_video`` reads a video's metadata and checks that it is whole; ``iter_clips`` streams
its clips. Frames are read with decord in chunks of ``decode.chunk_frames`` (small
``get_batch`` calls are much faster than one huge one) and resized once, by decord's ffmpeg
scaler while decoding (no second pass), on ``preprocess.devices.cpu_threads()`` threads.
PyAV reads what decord does not expose: the codec, the display rotation, the announced frame
count and duration. Decisions and measurements: ``docs/decode.md``.

Rotation: decord 0.6.0 applies the display matrix itself (``transpose`` before ``scale`` in
its filter graph), and its ``width``/``height`` are those of the *displayed* frame, so frames
come out upright at the requested size; rotating them again would be wrong. ``probe_video``
compares decord's first frame with PyAV's first frame turned upright and refuses the video
when they differ (tests compare with ffmpeg's own autorotation for 90, 180 and 270 degrees).
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import av
import cv2
import decord
import numpy as np

from preprocess.clip import Clip, VideoInfo, video_id_for
from preprocess.config import DecodeConfig
from preprocess.cuts import ClipCutter
from preprocess.devices import cpu_threads
from shards.storage import is_remote, local_path, read_bytes

log = logging.getLogger(__name__)

MAX_FPS = 1000.0
"""Frame rates outside (0, MAX_FPS] are metadata errors, not frame rates."""
FAULT_TOLERANCE = "1e-9"
"""decord ``fault_tol``: the share of frames decord may replace by a copy of the previous
frame when it cannot produce one. This tiny value makes the first substituted frame an error;
with decord's default (-1) it substitutes silently (measured on a valid 288-frame MPEG-TS
file: indices 0..37 gave frames 250..287, the other 250 were copies of the last frame)."""
DECLARED_SLACK = (0.01, 2)
"""A video with fewer readable frames than the container announces, beyond this (fraction,
frames) slack, is truncated."""
DURATION_SLACK = (0.10, 1.0)
"""The same check against the container's duration × fps, beyond (fraction, seconds): looser,
because an audio track may outlast the video."""
FIRST_FRAME_TOLERANCE = 8.0
"""Largest mean absolute difference (0..255) between decord's and PyAV's first frame at
THUMBNAIL x THUMBNAIL pixels. Measured: 0 when both decode at the same size, 1.07 for the
dance video scaled by decord to its stored 640x1138, 2.5 through the narrow-width workaround,
19 for decord's wrong keyframe on an MPEG-TS file."""
THUMBNAIL = 48
_SAFE_DECODE_WIDTH = 64
_Media = str | bytes
"""A local path, or the bytes of a remote object."""
_DECORD_ERRORS = (decord.DECORDError, decord.DECORDLimitReachedError, RuntimeError)
"""What decord raises: its own errors (LimitReached is not a DECORDError) and RuntimeError."""


class DecodeError(RuntimeError):
    """A video that cannot be decoded; the pipeline turns it into a ``failed`` row."""


def stored_size(src_h: int, src_w: int, short_side: int, upscale: bool) -> tuple[int, int]:
    """Stored (height, width) of a displayed frame of ``src_h`` × ``src_w`` pixels.

    The short side becomes ``short_side`` (rounded down to even), the long side follows the
    aspect ratio (rounded to the nearest even number; yuv420p needs even sides). A video whose
    short side is already at most ``short_side`` keeps its size (rounded down to even) unless
    ``upscale``: upscaling invents no detail and training resizes anyway.
    """
    if min(src_h, src_w) < 2 or short_side < 2:
        raise ValueError(f"cannot size a {src_h}x{src_w} frame to short side {short_side}")
    short, long = sorted((src_h, src_w))
    if short <= short_side and not upscale:
        return src_h - src_h % 2, src_w - src_w % 2
    new_short = short_side - short_side % 2
    new_long = max(2, 2 * math.floor(long * new_short / short / 2 + 0.5))
    return (new_short, new_long) if src_h <= src_w else (new_long, new_short)


def stored_fps(src_fps: float, max_fps: float) -> float:
    """Stored frame rate: the source rate capped at ``max_fps``."""
    return min(src_fps, max_fps)


def sample_indices(
    src_frames: int, src_fps: float, max_fps: float, max_frames: int = 0
) -> np.ndarray:
    """Source frame index of each stored frame, (N,) int64, strictly increasing.

    At most ``max_fps``: stored frame k shows the source frame nearest to time k / max_fps
    (index round(k · src_fps / max_fps)); a source at or below the cap keeps every frame.
    ``max_frames`` > 0 keeps only the first ``max_frames`` stored frames.
    """
    if not (src_fps > 0 and max_fps > 0) or src_frames < 0:
        raise ValueError(f"bad sampling: {src_frames} frames, {src_fps} fps, cap {max_fps}")
    if src_fps <= max_fps:
        indices = np.arange(src_frames, dtype=np.int64)
    else:
        step = src_fps / max_fps
        k = np.arange(math.ceil(src_frames / step) + 1, dtype=np.float64)
        indices = np.floor(k * step + 0.5).astype(np.int64)
        indices = indices[indices < src_frames]
    return indices[:max_frames] if max_frames > 0 else indices


@dataclass
class _Container:
    """What PyAV reports about the video stream."""

    codec: str
    height: int
    width: int
    """Displayed size: the coded size, swapped for a rotation of 90 or 270 degrees."""
    rotation: int
    """Clockwise display rotation, 0/90/180/270."""
    thumbnail: np.ndarray
    """The first frame, upright, as THUMBNAIL x THUMBNAIL RGB (decord must agree)."""
    declared_frames: int
    """Frame count written in the container header (0: not written, e.g. Matroska)."""
    duration_s: float
    """Duration of the video stream, else of the container (0: unknown)."""
    duration_exact: bool
    """Whether ``duration_s`` is the video stream's own."""
    rate: float
    """PyAV's guess of the frame rate (0: none)."""


def probe_video(source: str, cfg: DecodeConfig) -> VideoInfo:
    """Open ``source``, check it is a whole, decodable video, and describe its clips' frames.

    Raises :class:`DecodeError` with a human reason for anything that is not: missing or
    zero-byte file, not a video, no video stream, truncated, undecodable, absurd metadata.
    """
    media = _load(source)
    meta = _probe_container(media)
    src_h, src_w = meta.height, meta.width
    height, width = stored_size(src_h, src_w, cfg.short_side, cfg.upscale)
    size = _decoder_size(height, width)  # the reader iter_clips reads from: opened once
    reader = _open_reader(media, size)
    n_frames = len(reader)
    fps = _usable_fps(reader.get_avg_fps(), meta.rate, n_frames, _end_seconds(reader))
    _check_complete(n_frames, fps, meta)
    _check_first_frame(reader, meta)
    _OPENED.keep(source, size, reader)
    log.debug("probed %s: %dx%d, %g fps, %d frames", source, src_w, src_h, fps, n_frames)
    return VideoInfo(
        source=source,
        video_id=video_id_for(source),
        src_width=src_w,
        src_height=src_h,
        src_fps=fps,
        src_frames=n_frames,
        rotation=meta.rotation,
        width=width,
        height=height,
        fps=stored_fps(fps, cfg.max_fps),
        codec=meta.codec,
    )


def iter_clips(info: VideoInfo, cfg: DecodeConfig) -> Iterator[Clip]:
    """Stream the clips of a probed video: at most one clip and one decode chunk in memory.

    Reads the sampled frames (``sample_indices``) in chunks of ``cfg.chunk_frames``, runs the
    stored frames through ``cuts.ClipCutter`` (cut detection and the clip-span rule) and
    yields its clips: at most ``cfg.clip_frames`` frames, never across a cut, shorter pieces
    than ``cfg.min_clip_frames`` dropped. A frame that cannot be decoded raises
    :class:`DecodeError` (no short or patched video is ever yielded).
    """
    indices = sample_indices(info.src_frames, info.src_fps, cfg.max_fps, cfg.max_frames)
    size = _decoder_size(info.height, info.width)
    reader = _OPENED.take(info.source, size) or _open_reader(_load(info.source), size)
    cutter = ClipCutter(info, cfg)
    step = max(1, cfg.chunk_frames)
    for start in range(0, len(indices), step):
        chunk = indices[start : start + step]
        frames = _read_chunk(reader, chunk, (info.height, info.width))  # (N, H, W, 3) uint8
        for frame, source_frame in zip(frames, chunk, strict=True):
            yield from cutter.add(frame, int(source_frame))
    yield from cutter.close()


# --- opening -----------------------------------------------------------------------------


class _ReaderSlot:
    """The reader :func:`probe_video` opened, kept for the :func:`iter_clips` of the same video
    that follows it (a video is opened, and a remote one fetched, once; measured on 24-frame
    1080p pieces of the dance video, the probe costs 1.8 CPU ms per stored frame instead of
    2.4, in two runs each). One slot: a later probe replaces it, a take empties it, another
    video or size opens anew."""

    def __init__(self) -> None:
        self.key: tuple[str, tuple[int, int]] | None = None
        self.reader: decord.VideoReader | None = None

    def keep(self, source: str, size: tuple[int, int], reader: decord.VideoReader) -> None:
        self.key, self.reader = (source, size), reader

    def take(self, source: str, size: tuple[int, int]) -> decord.VideoReader | None:
        reader = self.reader if self.key == (source, size) else None
        self.key = self.reader = None
        return reader


_OPENED = _ReaderSlot()


def _load(source: str) -> _Media:
    """A local path (checked), or the bytes of a remote URI.

    decord and PyAV both read a local path directly; a remote object (``s3://``) is fetched
    whole into memory through ``shards.storage``.
    """
    if is_remote(source):
        try:
            data = read_bytes(source)
        except (OSError, ValueError) as exc:
            raise DecodeError(f"cannot read {source}: {exc}") from exc
        if not data:
            raise DecodeError(f"zero-byte file: {source}")
        return data
    path = local_path(source)
    if not path.is_file():
        raise DecodeError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise DecodeError(f"zero-byte file: {path}")
    return str(path)


def _as_input(media: _Media) -> str | io.BytesIO:
    return io.BytesIO(media) if isinstance(media, bytes) else media


def _probe_container(media: _Media) -> _Container:
    """Container facts from PyAV; decoding the first frame gives the display rotation."""
    try:
        container = av.open(_as_input(media), mode="r")
    except av.FFmpegError as exc:
        raise DecodeError(f"not a video, or a damaged container: {exc}") from exc
    with container:
        streams = [s for s in container.streams.video if not _is_cover_art(s)]
        if not streams:
            kinds = sorted(
                {"cover art" if _is_cover_art(s) else str(s.type) for s in container.streams}
            )
            kinds = kinds or ["none"]
            raise DecodeError(f"no video stream (streams: {', '.join(kinds)})")
        stream = streams[0]
        codec = stream.codec_context.name
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise DecodeError(
                f"cannot decode the first {codec} frame (damaged or truncated file): {exc}"
            ) from exc
        if first is None:
            raise DecodeError(f"the {codec} video stream holds no frame")
        rotation = (-90 * round(first.rotation / 90)) % 360
        upright = np.rot90(first.to_ndarray(format="rgb24"), k=-rotation // 90)
        exact = stream.duration is not None and stream.time_base is not None
        duration = float(stream.duration * stream.time_base) if exact else 0.0  # type: ignore[operator]
        if not exact and container.duration:
            duration = container.duration / av.time_base
        return _Container(
            codec=codec,
            height=upright.shape[0],
            width=upright.shape[1],
            rotation=rotation,
            thumbnail=_thumbnail(upright),
            declared_frames=max(0, stream.frames),
            duration_s=max(0.0, duration),
            duration_exact=exact,
            rate=float(stream.guessed_rate or 0.0),
        )


def _is_cover_art(stream: av.stream.Stream) -> bool:
    """An attached picture (album art): a one-frame "video" stream that is not a video."""
    return stream.type == "video" and bool(stream.disposition & av.stream.Disposition.attached_pic)


def _open_reader(media: _Media, size: tuple[int, int] = (-1, -1)) -> decord.VideoReader:
    """A decord reader at (height, width) of the displayed frame (-1: native), strict about
    undecodable frames, with decord's ffmpeg log silenced (failures raise instead), decoding
    on :func:`~preprocess.devices.cpu_threads` threads."""
    decord.logging.set_level(decord.logging.QUIET)
    try:
        return decord.VideoReader(
            _as_input(media),
            width=size[1],
            height=size[0],
            num_threads=cpu_threads(),
            fault_tol=FAULT_TOLERANCE,
        )
    except (*_DECORD_ERRORS, AssertionError) as exc:
        raise DecodeError(f"damaged or truncated video: {_decord_message(exc)}") from exc


def _decord_message(exc: BaseException) -> str:
    """decord's error without its C++ source location and backtrace, in plain words."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: (\[[^\]]*\])?", "", text)
    if "duplicate frames" in text or "Unable to handle EOF" in text:
        return "frames could not be decoded (corrupt data, or a stream decord cannot seek)"
    if "av_read_frame failed" in text:
        return "the file ends in the middle of its data (av_read_frame failed)"
    if "Error sending packet" in text:
        return "corrupt video data (the decoder rejected a packet)"
    return text


def _end_seconds(reader: decord.VideoReader) -> float:
    """End time of the last frame from decord's packet index (0: unknown)."""
    try:
        return float(reader.get_frame_timestamp(len(reader) - 1)[1])
    except (*_DECORD_ERRORS, IndexError, ValueError):
        return 0.0


def _usable_fps(reported: float, guessed: float, n_frames: int, end_s: float) -> float:
    """The first sane rate of: the stream's average rate, PyAV's guess, frames ÷ duration."""
    candidates = [reported, guessed, n_frames / end_s if end_s > 0 else 0.0]
    for fps in candidates:
        if math.isfinite(fps) and 0 < fps <= MAX_FPS:
            return float(fps)
    raise DecodeError(f"unusable frame rate (stream says {reported}, {n_frames} frames)")


def _check_complete(n_frames: int, fps: float, meta: _Container) -> None:
    """Refuse videos with fewer readable frames than their container announces."""
    if n_frames < 1:
        raise DecodeError("the video stream holds no frame")
    if meta.declared_frames:
        expected, (frac, extra) = meta.declared_frames, DECLARED_SLACK
        announced = f"{expected} frames"
    elif meta.duration_s > 0:
        frac, seconds = DECLARED_SLACK if meta.duration_exact else DURATION_SLACK
        expected = round(meta.duration_s * fps)
        extra = 2 if meta.duration_exact else round(seconds * fps)
        announced = f"{meta.duration_s:.1f} s ({expected} frames at {fps:g} fps)"
    else:
        return  # nothing announced (e.g. a raw stream): the readable frames are the video
    if n_frames < expected * (1 - frac) - extra:
        raise DecodeError(
            f"truncated: the container announces {announced}, only {n_frames} frames are there"
        )


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    small = cv2.resize(frame, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def _check_first_frame(reader: decord.VideoReader, meta: _Container) -> None:
    """decord's first frame must be PyAV's first frame, upright.

    This checks decord's rotation (it applies the display matrix itself) and its seeking:
    on some streams (measured: MPEG-TS) decord's frame 0 is in fact a later keyframe.
    """
    try:
        first = reader[0].asnumpy()
    except _DECORD_ERRORS as exc:
        raise DecodeError(f"cannot decode the first frame: {_decord_message(exc)}") from exc
    if first.ndim != 3 or first.shape[2] != 3:
        raise DecodeError(f"decoder returned a {first.shape} frame")
    difference = float(np.abs(_thumbnail(first) - meta.thumbnail).mean())
    if difference > FIRST_FRAME_TOLERANCE:
        raise DecodeError(
            f"decord and ffmpeg disagree on the first frame (mean difference {difference:.0f}"
            f"/255; rotation {meta.rotation}): decord cannot seek this stream reliably"
        )


# --- reading -----------------------------------------------------------------------------


def _decoder_size(height: int, width: int) -> tuple[int, int]:
    """Size to ask decord for. decord 0.6.0 garbles some small widths (measured here: 2, 4,
    6, 8, 12, 16, 24, 48, 72): when the row stride, padded for alignment, is a multiple of
    the width, it reads the padding as extra channels. Widths at risk for a 16, 32 or 64
    alignment are decoded at a multiple of 64 (no padding) and resized with OpenCV."""
    for align in (16, 32, 64):
        padded = -(-width // align) * align
        if padded != width and (3 * padded) % width == 0:
            return height, -(-width // _SAFE_DECODE_WIDTH) * _SAFE_DECODE_WIDTH
    return height, width


def _read_chunk(
    reader: decord.VideoReader, indices: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Frames ``indices`` as (N, H, W, 3) uint8 at ``size``; DecodeError on any failure."""
    try:
        batch = reader.get_batch(indices.tolist()).asnumpy()
    except _DECORD_ERRORS as exc:
        raise DecodeError(
            f"decoding failed at source frames {indices[0]}..{indices[-1]}: {_decord_message(exc)}"
        ) from exc
    height, width = size
    if batch.shape[1:3] != (height, width):
        batch = np.stack(
            [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in batch]
        )
    if batch.shape != (len(indices), height, width, 3) or batch.dtype != np.uint8:
        raise DecodeError(f"decoder returned {batch.shape} {batch.dtype} frames")
    return batch
