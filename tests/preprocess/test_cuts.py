"""Shot-cut detector and the clip-span rule: synthetic frames, real frames, and properties.

The span rule (``cuts.SpanBuilder``, the streaming form that decoding drives) is checked
against a whole-video oracle written here: the shots between the cuts, each divided greedily.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from preprocess.clip import VideoInfo
from preprocess.config import DecodeConfig
from preprocess.cuts import (
    ClipCutter,
    CutDetector,
    SpanBuilder,
    frame_signature,
    signature_distance,
)

THRESHOLD = DecodeConfig().cut_threshold


def _scene_a(h: int = 120, w: int = 160) -> np.ndarray:
    """Sky over grass, with a grey house: a plausible outdoor frame."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (110, 160, 230)
    img[h // 2 :] = (60, 140, 50)
    img[40:90, 60:110] = (150, 150, 150)
    return img


def _scene_b(h: int = 120, w: int = 160) -> np.ndarray:
    """A warm indoor frame: orange wall, dark-red floor, a yellow lamp."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: 2 * h // 3] = (220, 130, 60)
    img[2 * h // 3 :] = (90, 20, 20)
    img[10:40, 120:150] = (250, 240, 90)
    return img


def _noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    noise = rng.normal(0.0, sigma, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _cuts(frames: list[np.ndarray] | np.ndarray, threshold: float = THRESHOLD) -> list[int]:
    detector = CutDetector(threshold)
    return [i for i, frame in enumerate(frames) if detector.update(frame)]


# --- signature and distance -------------------------------------------------------------


def test_signature_is_a_normalised_histogram() -> None:
    sig = frame_signature(_scene_a())
    assert sig.ndim == 1 and sig.dtype == np.float32
    assert np.all(sig >= 0) and sig.sum() == pytest.approx(1.0, abs=1e-5)


def test_distance_bounds_and_symmetry() -> None:
    a, b = frame_signature(_scene_a()), frame_signature(_scene_b())
    assert signature_distance(a, a) == pytest.approx(0.0, abs=1e-3)
    assert signature_distance(a, b) == pytest.approx(signature_distance(b, a), abs=1e-6)
    assert 0.0 <= signature_distance(a, b) <= 1.0
    # Pure red vs pure blue: no bin in common, distance 1.
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((32, 32, 3), np.uint8)
    blue[..., 2] = 255
    assert signature_distance(frame_signature(red), frame_signature(blue)) == pytest.approx(1.0)


def test_signature_barely_depends_on_resolution() -> None:
    img = _scene_a(480, 640)
    small = cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA)
    assert signature_distance(frame_signature(img), frame_signature(small)) < 0.1


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3))]
)
def test_signature_rejects_non_rgb_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        frame_signature(bad)


# --- detector on synthetic frames -------------------------------------------------------


def test_hard_cut_is_detected_exactly_once() -> None:
    rng = np.random.default_rng(0)
    frames = [_noisy(_scene_a(), rng) for _ in range(10)]
    frames += [_noisy(_scene_b(), rng) for _ in range(10)]
    assert _cuts(frames) == [10]


def test_first_frame_is_never_a_cut() -> None:
    detector = CutDetector(THRESHOLD)
    assert not detector.update(_scene_b())
    assert detector.update(_scene_a())


def test_gradual_brightness_drift_is_not_a_cut() -> None:
    base = _scene_a().astype(np.float32)
    frames = [(base * f).astype(np.uint8) for f in np.linspace(1.0, 0.4, 60)]
    assert _cuts(frames) == []
    # The drift as a whole is large: the detector is not simply blind to brightness.
    total = signature_distance(frame_signature(frames[0]), frame_signature(frames[-1]))
    assert total > THRESHOLD


def test_small_motion_is_not_a_cut() -> None:
    rng = np.random.default_rng(1)
    frames = []
    for t in range(40):
        img = _scene_a()
        x = 10 + 3 * t
        img[70:110, x : x + 20] = (200, 40, 40)  # a red figure walking right
        frames.append(_noisy(img, rng))
    assert _cuts(frames) == []


# --- detector on real frames ------------------------------------------------------------


def _read(path: Path, size: tuple[int, int], step: int = 1, limit: int = 0) -> np.ndarray:
    """Frames of a real video at (height, width), every ``step``-th, up to ``limit``."""
    reader = decord.VideoReader(str(path), width=size[1], height=size[0])
    indices = list(range(0, len(reader), step))[: limit or None]
    return np.concatenate(
        [reader.get_batch(indices[i : i + 32]).asnumpy() for i in range(0, len(indices), 32)]
    )


@pytest.fixture(scope="module")
def vtest_small(vtest: Path) -> np.ndarray:
    return _read(vtest, (144, 192))


def test_static_real_video_has_no_cuts(vtest_small: np.ndarray) -> None:
    assert len(vtest_small) == 795
    assert _cuts(vtest_small) == []


def test_join_of_two_real_videos_is_exactly_one_cut(vtest_small: np.ndarray, dance: Path) -> None:
    dance_frames = _read(dance, (320, 180), step=2, limit=40)  # 12 fps, like the fps cap
    resized = [cv2.resize(f, (192, 144), interpolation=cv2.INTER_AREA) for f in dance_frames]
    frames = [*vtest_small[:50], *resized, *vtest_small[50:80]]
    assert _cuts(frames) == [50, 90]
    assert _cuts(frames[:90]) == [50]


# --- the clip-span rule -------------------------------------------------------------------


def split_spans(
    n_frames: int, cuts: list[int], max_len: int, min_len: int
) -> list[tuple[int, int]]:
    """The spans SpanBuilder gives a whole video of ``n_frames`` with a cut before each
    position in ``cuts`` (0 and ``n_frames`` allowed: they change nothing)."""
    builder = SpanBuilder(max_len, min_len)
    spans = [s for i in range(n_frames) for s in builder.add(i in cuts)]
    return spans + builder.close()


def oracle_spans(
    n_frames: int, cuts: list[int], max_len: int, min_len: int
) -> list[tuple[int, int]]:
    """The rule on the whole video at once: shots between cuts, each cut into consecutive
    max_len pieces from its start, pieces shorter than min_len dropped."""
    spans = []
    for shot_start, shot_end in itertools.pairwise(sorted({0, n_frames, *cuts})):
        for start in range(shot_start, shot_end, max_len):
            end = min(start + max_len, shot_end)
            if end - start >= min_len:
                spans.append((start, end))
    return spans


def test_split_spans_examples() -> None:
    # One long shot: consecutive max_len pieces from its start, short tail dropped.
    assert split_spans(140, [], max_len=64, min_len=16) == [(0, 64), (64, 128)]
    assert split_spans(140, [], max_len=64, min_len=10) == [(0, 64), (64, 128), (128, 140)]
    # Cuts: no span crosses one; a short shot between two cuts is dropped.
    assert split_spans(100, [30, 40], max_len=64, min_len=16) == [(0, 30), (40, 100)]
    # Cuts at 0 and n are no-ops, duplicates and order do not matter.
    assert split_spans(20, [20, 0, 10, 10], max_len=8, min_len=1) == [
        (0, 8),
        (8, 10),
        (10, 18),
        (18, 20),
    ]
    assert split_spans(0, [], max_len=8, min_len=1) == []


def test_spans_are_final_as_soon_as_their_last_frame_is_in() -> None:
    builder = SpanBuilder(max_len=4, min_len=2)
    assert [builder.add(cut) for cut in (False, False, False)] == [[], [], []]
    assert builder.add(False) == [(0, 4)]  # full: out with its 4th frame
    assert builder.add(False) == [] and builder.add(False) == []
    assert builder.add(True) == [(4, 6)]  # a cut before frame 6 ends the piece before it
    assert builder.add(True) == []  # a 1-frame shot: dropped
    assert builder.start == 7  # frames before the piece in progress are never needed again
    assert builder.close() == []


@pytest.mark.parametrize(("max_len", "min_len"), [(0, 0), (4, 5), (-1, -3)])
def test_span_builder_rejects_bad_arguments(max_len: int, min_len: int) -> None:
    with pytest.raises(ValueError, match="max_len"):
        SpanBuilder(max_len, min_len)


@st.composite
def _split_args(draw: st.DrawFn) -> tuple[int, list[int], int, int]:
    n = draw(st.integers(0, 400))
    cuts = draw(st.lists(st.integers(0, n), max_size=12))
    max_len = draw(st.integers(1, 80))
    min_len = draw(st.integers(0, max_len))
    return n, cuts, max_len, min_len


@given(_split_args())
def test_streamed_spans_are_the_whole_video_rule(args: tuple[int, list[int], int, int]) -> None:
    n, cuts, max_len, min_len = args
    spans = split_spans(n, cuts, max_len, min_len)
    assert spans == oracle_spans(n, cuts, max_len, min_len)
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert e0 <= s1 and s0 < e0  # sorted, disjoint, non-empty
    for start, end in spans:
        assert 0 <= start < end <= n
        assert max(1, min_len) <= end - start <= max_len
        assert not any(start < c < end for c in cuts)  # never crosses a cut


def test_clip_cutter_gives_each_clip_its_frames() -> None:
    """Two synthetic shots through the cutter: clips follow the spans, own their arrays."""
    frames = [_scene_a()] * 10 + [_scene_b()] * 7
    info = VideoInfo("/v.mp4", "0" * 16, 160, 120, 10.0, 17, 0, 160, 120, 10.0)
    cutter = ClipCutter(info, DecodeConfig(clip_frames=6, min_clip_frames=3))
    clips = [c for i, f in enumerate(frames) for c in cutter.add(f, 100 + i)]
    assert len(cutter.frames) == 1  # only the piece in progress (frame 16) is held
    clips += list(cutter.close())
    spans = [(int(c.source_frames[0]) - 100, int(c.source_frames[-1]) - 99) for c in clips]
    assert spans == split_spans(17, [10], max_len=6, min_len=3) == [(0, 6), (6, 10), (10, 16)]
    assert [c.index for c in clips] == [0, 1, 2]
    assert all((c.frames == frames[s]).all() for c, (s, _) in zip(clips, spans, strict=True))
    assert not np.shares_memory(clips[0].frames, clips[1].frames)
