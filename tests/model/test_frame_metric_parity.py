"""L1, PSNR and SSIM (model/metrics/frame.py) against scikit-image on real frames.

The frames are crops of the shared assets' real videos (vtest.avi, dance_single.mp4); the
generated side is the same crop after a real distortion: Gaussian noise, a Gaussian blur, a
shift by a few pixels (the crop window moved over the real frame), JPEG compression, and the
next video frame. The reference is ``skimage.metrics`` with the settings docs/evaluate.md
names (``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` per RGB channel, ``peak_signal_noise_ratio``
with ``data_range=255``), an implementation independent of ours.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from model.metrics.frame import PSNR_CAP, l1, psnr, ssim
from shards.video import read_video

CROP = (120, 152)  # (H, W) of every test frame
DISTORTIONS = ("noise", "blur", "shift", "jpeg", "next_frame")


def _crop(frame: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    """(H, W, 3) -> the (CROP) window at the frame's centre moved by (dy, dx) pixels."""
    h, w = frame.shape[:2]
    y0, x0 = (h - CROP[0]) // 2 + dy, (w - CROP[1]) // 2 + dx
    return np.ascontiguousarray(frame[y0 : y0 + CROP[0], x0 : x0 + CROP[1]])


def _short_side(frames: np.ndarray, side: int) -> np.ndarray:
    """(T, H, W, 3) -> (T, h, w, 3) shrunk (area) to a short side of ``side`` pixels, so
    that the crop holds textured content (the dancer, the street), not a flat shirt."""
    h, w = frames.shape[1:3]
    size = (round(w * side / min(h, w)), round(h * side / min(h, w)))  # cv2's (w, h)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _distort(kind: str, frames: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    """The real crop of frame ``t`` after the distortion ``kind``, (CROP, 3) uint8."""
    real = _crop(frames[t])
    if kind == "noise":
        noisy = real.astype(np.float64) + rng.normal(0.0, 8.0, real.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if kind == "blur":
        return cv2.GaussianBlur(real, (5, 5), 1.2)
    if kind == "shift":
        return _crop(frames[t], dy=2, dx=-3)
    if kind == "jpeg":
        ok, data = cv2.imencode(".jpg", real, [cv2.IMWRITE_JPEG_QUALITY, 25])
        assert ok
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if kind == "next_frame":
        return _crop(frames[t + 1])
    raise ValueError(kind)


@pytest.fixture(scope="module")
def pairs(vtest: Path, dance: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """distortion -> (generated, real) clips of 4 frames (2 of each video), (4, H, W, 3)."""
    videos = [_short_side(read_video(path, 3)[0], 270) for path in (vtest, dance)]
    rng = np.random.default_rng(0)
    out = {}
    for kind in DISTORTIONS:
        gen = [_distort(kind, v, t, rng) for v in videos for t in (0, 1)]
        real = [_crop(v[t]) for v in videos for t in (0, 1)]
        out[kind] = (np.stack(gen), np.stack(real))
    return out


def _sk_ssim(g: np.ndarray, r: np.ndarray) -> float:
    return float(
        structural_similarity(
            g / 255.0,
            r / 255.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
    )


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_ssim_matches_scikit_image_on_real_distortions(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], kind: str
) -> None:
    gen, real = pairs[kind]
    expected = [_sk_ssim(g, r) for g, r in zip(gen, real, strict=True)]
    assert ssim(gen, real).tolist() == pytest.approx(expected, abs=1e-10)
    # the distortions are real: the scores span the range where a missing term would show
    assert max(expected) < 0.99


def test_the_distortions_cover_a_wide_range_of_ssim(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    means = {k: float(ssim(*pairs[k]).mean()) for k in DISTORTIONS}
    assert min(means.values()) < 0.6 and max(means.values()) > 0.8, means


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_psnr_and_l1_match_scikit_image_and_numpy(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], kind: str
) -> None:
    gen, real = pairs[kind]
    expected = [
        peak_signal_noise_ratio(r, g, data_range=255) for g, r in zip(gen, real, strict=True)
    ]
    assert psnr(gen, real).tolist() == pytest.approx(expected, abs=1e-9)
    diff = np.abs(gen.astype(np.int64) - real.astype(np.int64))  # (T, H, W, 3)
    assert l1(gen, real).tolist() == pytest.approx((diff.mean(axis=(1, 2, 3)) / 255).tolist())


def test_psnr_of_an_identical_frame_is_the_cap_where_scikit_image_says_inf(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    gen, real = pairs["noise"]
    both = np.stack([gen[0], real[1]])
    ref = np.stack([real[0], real[1]])
    with np.errstate(divide="ignore"):
        assert peak_signal_noise_ratio(ref[1], both[1], data_range=255) == np.inf
    values = psnr(both, ref).tolist()
    assert values[0] == pytest.approx(peak_signal_noise_ratio(ref[0], both[0], data_range=255))
    assert values[1] == PSNR_CAP
