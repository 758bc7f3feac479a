"""Shot-cut detection and clip spans: where the clips of a video begin and end. No I/O.

A clip must lie inside one shot (docs/design.md §4), so decoding (``preprocess.decode.iter_clips``)
hands every stored frame to a :class:`ClipCutter`, which runs it through a
:class:`CutDetector` and cuts clips where the clip-span rule (:class:`SpanBuilder`) says.

What is measured: each frame's colour distribution, a joint HSV histogram (16 hue × 4
saturation × 4 value bins, hue circular) of a 64×64 downscaled copy, normalised to sum 1 (large
frames are first subsampled by an integer stride to at least 128 pixels on the short side:
4× cheaper, and a histogram does not need every pixel). Each pixel is shared between its two
nearest bins on every axis (trilinear soft binning), so a colour drifting across a bin edge
moves its weight gradually; with hard bins, a flat region (a wall, the sky) darkening by 1 %
could look like a cut. Two consecutive frames whose histograms are more than
``decode.cut_threshold`` apart in Bhattacharyya distance (0 = identical, 1 = disjoint) are
separated by a cut. Histograms ignore where things are, so people and cameras moving inside a
shot barely change them, while a cut to another scene changes the palette. Measured on
full-size frames: consecutive frames of the real test videos stay below 0.07, every pair across
the two videos is above 0.83, and a sudden brightness change of 3 % scores 0.05, of 10 % 0.14,
of 40 % 0.52.

Known limits: a fade or a dissolve spreads a transition over many frames, each step below the
threshold, so it is not detected (the clip then contains the transition); a sudden lighting
change (a flash, a strobe, a light switched on) can be reported as a cut, which only splits a
clip; a cut between two shots with the same palette (same set, other angle) can be missed.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from preprocess.clip import Clip, VideoInfo
from preprocess.config import DecodeConfig

SIGNATURE_SIZE = 64
"""Frames are downscaled to SIGNATURE_SIZE × SIGNATURE_SIZE before the histogram."""
HSV_BINS = (16, 4, 4)
"""Histogram bins for hue (OpenCV range 0..180, circular), saturation and value (0..256)."""
_HSV_TOPS = (180.0, 256.0, 256.0)


def _soft_bins(
    values: np.ndarray, n_bins: int, top: float, circular: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The two nearest bin centres of each value and their linear weights, both (2, N)."""
    pos = values * (n_bins / top) - 0.5
    low = np.floor(pos)
    frac = pos - low
    bins = low.astype(np.int64) + np.array([[0], [1]])
    bins = bins % n_bins if circular else np.clip(bins, 0, n_bins - 1)
    return bins, np.stack([1.0 - frac, frac])


def frame_signature(frame: np.ndarray) -> np.ndarray:
    """Colour signature of an (H, W, 3) uint8 RGB frame: a normalised joint HSV histogram.

    Returns a float32 vector of ``prod(HSV_BINS)`` values that sum to 1.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    stride = max(1, min(frame.shape[:2]) // (2 * SIGNATURE_SIZE))  # cheap pre-decimation
    small = cv2.resize(
        frame[::stride, ::stride], (SIGNATURE_SIZE, SIGNATURE_SIZE), interpolation=cv2.INTER_AREA
    )
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float64)
    (h, wh), (sat, ws), (v, wv) = (
        _soft_bins(hsv[:, c], HSV_BINS[c], _HSV_TOPS[c], circular=c == 0) for c in range(3)
    )
    # Every pixel spreads over the 8 neighbouring bins: (2, 2, 2, N) indices and weights.
    index = (h[:, None, None] * HSV_BINS[1] + sat[None, :, None]) * HSV_BINS[2] + v[None, None]
    weight = wh[:, None, None] * ws[None, :, None] * wv[None, None]
    hist = np.bincount(index.ravel(), weight.ravel(), int(np.prod(HSV_BINS)))
    return (hist / hist.sum()).astype(np.float32)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance between two signatures, in [0, 1] (0 = identical)."""
    d = cv2.compareHist(a.astype(np.float32), b.astype(np.float32), cv2.HISTCMP_BHATTACHARYYA)
    return float(np.clip(d, 0.0, 1.0))


class CutDetector:
    """Streaming cut detector: feed the stored frames in order, one at a time.

    ``update(frame)`` says whether a cut lies between the previous frame and this one; the
    first frame is never a cut.
    """

    def __init__(self, threshold: float = DecodeConfig.cut_threshold) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"cut threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.last_distance = 0.0
        """Distance between the last two frames seen (0 after the first frame)."""
        self._previous: np.ndarray | None = None

    def update(self, frame: np.ndarray) -> bool:
        signature = frame_signature(frame)
        previous, self._previous = self._previous, signature
        if previous is None:
            self.last_distance = 0.0
            return False
        self.last_distance = signature_distance(previous, signature)
        return self.last_distance > self.threshold


Span = tuple[int, int]
"""Half-open frame positions ``[start, end)`` of one clip."""


class SpanBuilder:
    """The clip-span rule, streaming: where clips start and end as the frames come in.

    Call :meth:`add` once per stored frame, in order, saying whether a cut lies between the
    previous frame and this one, then :meth:`close` after the last; each returns the spans
    that became final. Shots are divided greedily from their first frame: consecutive pieces
    of ``max_len`` frames, then the remaining tail; pieces shorter than ``min_len`` (in
    practice the tail of a shot, or a whole short shot) are dropped. Greedy division needs no
    look-ahead, so a decoder can emit each clip as soon as its last frame is read, and it
    keeps clip starts stable (clip keys derive from them).
    """

    def __init__(self, max_len: int, min_len: int) -> None:
        if max_len < 1 or min_len > max_len:
            raise ValueError(f"need 1 <= max_len and min_len <= max_len, got {max_len}, {min_len}")
        self.max_len, self.min_len = max_len, min_len
        self.start = 0
        """First frame of the piece in progress: earlier frames are never in a later span."""
        self.end = 0
        """Frames seen."""

    def add(self, cut_before: bool) -> list[Span]:
        """One more frame; the spans it completes (at most two: before a cut, and full)."""
        done = self._end_piece() if cut_before else []
        self.end += 1
        if self.end - self.start == self.max_len:
            done += self._end_piece()
        return done

    def close(self) -> list[Span]:
        """No more frames: the last piece, if long enough."""
        return self._end_piece()

    def _end_piece(self) -> list[Span]:
        span, self.start = (self.start, self.end), self.end
        length = span[1] - span[0]
        return [span] if length > 0 and length >= self.min_len else []


class ClipCutter:
    """A video's clips from its stored frames, streamed: cut detection plus the span rule.

    Holds only the frames of the clip in progress; every clip gets arrays of its own.
    """

    def __init__(self, info: VideoInfo, cfg: DecodeConfig) -> None:
        self.info, self.index = info, 0
        self.detector = CutDetector(cfg.cut_threshold)
        self.spans = SpanBuilder(cfg.clip_frames, cfg.min_clip_frames)
        self.first = 0
        """Position (in stored frames) of ``frames[0]``."""
        self.frames: list[np.ndarray] = []
        self.sources: list[int] = []

    def add(self, frame: np.ndarray, source_frame: int) -> Iterator[Clip]:
        """The next stored frame, (H, W, 3) uint8, and its index in the source video."""
        self.frames.append(frame)
        self.sources.append(source_frame)
        yield from self._cut(self.spans.add(self.detector.update(frame)))

    def close(self) -> Iterator[Clip]:
        yield from self._cut(self.spans.close())

    def _cut(self, spans: list[Span]) -> Iterator[Clip]:
        for start, end in spans:
            a, b = start - self.first, end - self.first
            frames = np.stack(self.frames[a:b])  # (T, H, W, 3) uint8, a copy
            yield Clip(self.info, self.index, frames, np.array(self.sources[a:b], np.int64))
            self.index += 1
        drop, self.first = self.spans.start - self.first, self.spans.start
        del self.frames[:drop], self.sources[:drop]
