"""Shot-cut detector and clip spans: synthetic frames, real frames, and properties."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from preprocess.config import DecodeConfig
from preprocess.cuts import CutDetector, frame_signature, signature_distance, split_spans

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


def test_first_frame_is_never_a_cut_and_reset_forgets() -> None:
    detector = CutDetector(THRESHOLD)
    assert not detector.update(_scene_a())
    assert detector.update(_scene_b())
    detector.reset()
    assert not detector.update(_scene_a())


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


# --- split_spans ------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("n", "cuts", "max_len", "min_len"),
    [(10, [11], 4, 1), (10, [-1], 4, 1), (10, [], 0, 0), (10, [], 4, 5), (-1, [], 4, 1)],
)
def test_split_spans_rejects_bad_arguments(
    n: int, cuts: list[int], max_len: int, min_len: int
) -> None:
    with pytest.raises(ValueError):
        split_spans(n, cuts, max_len, min_len)


@st.composite
def _split_args(draw: st.DrawFn) -> tuple[int, list[int], int, int]:
    n = draw(st.integers(0, 400))
    cuts = draw(st.lists(st.integers(0, n), max_size=12))
    max_len = draw(st.integers(1, 80))
    min_len = draw(st.integers(0, max_len))
    return n, cuts, max_len, min_len


@given(_split_args())
def test_split_spans_properties(args: tuple[int, list[int], int, int]) -> None:
    n, cuts, max_len, min_len = args
    spans = split_spans(n, cuts, max_len, min_len)
    bounds = sorted({0, n, *cuts})
    shots = list(itertools.pairwise(bounds))
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert e0 <= s1 and s0 < e0  # sorted, disjoint, non-empty
    for start, end in spans:
        assert 0 <= start < end <= n
        assert max(1, min_len) <= end - start <= max_len
        assert not any(start < c < end for c in cuts)  # never crosses a cut
    for a, b in shots:
        inside = [s for s in spans if a <= s[0] < b]
        # Greedy division of each shot: contiguous from its start, every piece but the
        # last full, and only a tail shorter than min_len is left out.
        expected_start = a
        for i, (start, end) in enumerate(inside):
            assert start == expected_start
            assert end - start == max_len or i == len(inside) - 1
            expected_start = end
        if inside and inside[-1][1] - inside[-1][0] < max_len:
            assert inside[-1][1] == b  # a short piece is always the shot's tail
        assert b - expected_start < max(1, min_len) or b == expected_start
