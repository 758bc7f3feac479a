"""Per-frame metrics on tensors: L1, PSNR and SSIM of generated against real frames.

Conventions (the usual ones of the animation papers' tables; written here on tensors because
the libraries that carry them pull torchvision, which this project does not install):

- frames are uint8 RGB (T, H, W, 3); each metric is computed per frame and averaged over
  frames (then over clips by the caller, each frame counting once);
- **L1**: mean absolute difference of the values scaled to [0, 1];
- **PSNR**: ``10 log10(255² / MSE)`` over all pixels and channels of a frame, in dB; a frame
  identical to its reference (MSE = 0, PSNR = ∞) counts as :data:`PSNR_CAP` dB;
- **SSIM**: Wang et al. 2004 with an 11×11 Gaussian window of σ = 1.5, K1 = 0.01,
  K2 = 0.03, data range 1 on [0, 1] values, computed per RGB channel over the *valid* window
  positions (no padding, as the reference MATLAB code and ``skimage``'s
  ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``), and
  averaged over channels and positions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0
"""dB reported for a frame identical to its reference (MSE = 0)."""
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def as_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float64 in [0, 1]."""
    t = torch.as_tensor(np.asarray(frames))
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {tuple(t.shape)} {t.dtype}")
    return t.permute(0, 3, 1, 2).double() / 255.0


def _pair(generated: np.ndarray, real: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if np.shape(generated) != np.shape(real):
        raise ValueError(f"generated {np.shape(generated)} and real {np.shape(real)} differ")
    return as_float(generated), as_float(real)


def l1(generated: np.ndarray, real: np.ndarray) -> torch.Tensor:
    """(T,) mean absolute difference per frame, values in [0, 1]."""
    g, r = _pair(generated, real)
    return (g - r).abs().mean(dim=(1, 2, 3))


def psnr(generated: np.ndarray, real: np.ndarray) -> torch.Tensor:
    """(T,) PSNR per frame in dB (peak 255), :data:`PSNR_CAP` where the frames are equal."""
    g, r = _pair(generated, real)
    mse = ((g - r) * 255.0).square().mean(dim=(1, 2, 3))  # (T,)
    db = 10.0 * torch.log10(255.0**2 / mse.clamp_min(1e-300))
    return torch.where(mse == 0, torch.full_like(db, PSNR_CAP), db.clamp_max(PSNR_CAP))


def gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(size,) normalised Gaussian, float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(size, size) normalised Gaussian, float64: the outer product of :func:`gaussian_1d`."""
    g = gaussian_1d(size, sigma)
    return g[:, None] * g[None, :]


def ssim(generated: np.ndarray, real: np.ndarray) -> torch.Tensor:
    """(T,) mean SSIM per frame (see the module docstring for the exact settings)."""
    g, r = _pair(generated, real)
    if min(g.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW} pixels, got {g.shape}")
    t, c, h, w = g.shape
    k = gaussian_1d()
    # The 2-D window is separable: a row then a column pass (4-5x faster than one 11x11 pass
    # in float64), over the valid positions only, for the five maps at once.
    maps = torch.stack([g, r, g * g, r * r, g * r]).reshape(-1, 1, h, w)  # (5 T C, 1, H, W)
    blurred = F.conv2d(F.conv2d(maps, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    mu_g, mu_r, gg, rr, gr = blurred.reshape(5, t, c, h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1)
    var_g = gg - mu_g**2
    var_r = rr - mu_r**2
    cov = gr - mu_g * mu_r
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    num = (2 * mu_g * mu_r + c1) * (2 * cov + c2)
    den = (mu_g**2 + mu_r**2 + c1) * (var_g + var_r + c2)
    return (num / den).mean(dim=(1, 2, 3))


FRAME_METRICS = {"l1": l1, "psnr": psnr, "ssim": ssim}


def frame_scores(generated: np.ndarray, real: np.ndarray) -> dict[str, list[float]]:
    """Per-frame L1, PSNR and SSIM of one clip."""
    return {name: fn(generated, real).tolist() for name, fn in FRAME_METRICS.items()}
