"""Fréchet distance between two Gaussians fitted to feature sets (FID, FID-VID, FVD).

Follows pytorch-fid's ``calculate_frechet_distance``: means and (unbiased, ``np.cov``)
covariances in float64, ``scipy.linalg.sqrtm`` of the covariance product, an ``eps``
offset on the diagonals when the product is singular, the real part kept when round-off
leaves a small imaginary one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass
class Gaussian:
    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)
    count: int

    @classmethod
    def fit(cls, features: np.ndarray) -> Gaussian:
        """Mean and covariance of (N, D) features (N >= 2)."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need (N >= 2, D) features, got {f.shape}")
        return cls(f.mean(0), np.atleast_2d(np.cov(f, rowvar=False)), len(f))


def frechet_distance(a: Gaussian, b: Gaussian, eps: float = 1e-6) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    covmean = linalg.sqrtm(a.sigma.dot(b.sigma))
    if not np.isfinite(covmean).all():
        offset = np.eye(len(a.mu)) * eps
        covmean = linalg.sqrtm((a.sigma + offset).dot(b.sigma + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    value = diff.dot(diff) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean)
    return float(value)


def feature_distance(generated: np.ndarray, real: np.ndarray) -> float:
    """Fréchet distance between the Gaussians of two (N, D) feature sets."""
    return frechet_distance(Gaussian.fit(generated), Gaussian.fit(real))
