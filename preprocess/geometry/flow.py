"""Background flow and the flow guider input (docs/design.md §3).

B = (1 - M) * F is the flow outside the characters' union M; its mean magnitude b is the
clip statistic ``bg_flow_*`` (:mod:`preprocess.geometry.clip`); the flow guider's input
``(1 - M) * F / s + M`` is built on the training/inference canvas
(:mod:`preprocess.geometry.canvas`). Flows are ``(..., h, w, 2)`` in pixels per frame.
"""

from __future__ import annotations

import numpy as np

from preprocess.geometry.masks import nonzero_per_map


def background_flow(flow: np.ndarray, union: np.ndarray) -> np.ndarray:
    """B = (1 - M) * F: (..., h, w, 2) flow with the characters' union (..., h, w) zeroed."""
    flow = np.asarray(flow)
    return np.where(np.asarray(union, bool)[..., None], 0, flow).astype(flow.dtype, copy=False)


def background_magnitudes(
    flow: np.ndarray, background: np.ndarray, n_background: np.ndarray
) -> np.ndarray:
    """(..., h, w, 2) flow, (..., h, w) bool background (M = 0) and its (...,) areas ->
    (...,) float64 mean |F|_2 over the background, NaN where it is empty. Flow is expected
    finite (NaN under the mask would still poison its frame)."""
    f = np.ascontiguousarray(flow, np.float32)  # (..., h, w, 2)
    magnitude = np.abs(f.view(np.complex64)[..., 0])  # (..., h, w)
    magnitude *= background
    total = magnitude.sum(-1).sum(-1, dtype=np.float64)  # rows in float32, then float64
    return np.where(n_background > 0, total / np.maximum(n_background, 1), np.nan)


def background_flow_magnitude(flow: np.ndarray, union: np.ndarray) -> float:
    """b = mean over pixels with M = 0 of |F|_2 for (h, w, 2) flow; NaN if M covers all."""
    background = ~np.asarray(union, bool)
    return float(background_magnitudes(flow, background, nonzero_per_map(background)))


def flow_guider_input(flow: np.ndarray, union: np.ndarray, scale: float) -> np.ndarray:
    """(1 - M) * F / s + M * 1.0 per channel: (..., h, w, 2) float32."""
    scaled = np.asarray(flow, np.float32) / np.float32(scale)
    return np.where(np.asarray(union, bool)[..., None], np.float32(1.0), scaled)
