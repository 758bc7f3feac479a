"""Depth backend interface and its registry: relative inverse depth per frame, or none.

Depth only ranks characters front to back. A backend has the shape of every extractor backend
(:class:`preprocess.backends.Backend`: built from ``cfg.depth``, ``.device``, ``.identity()``);
the depth stage (``preprocess.stages``) calls :meth:`DepthBackend.clip_depth` and hands the map
(or None) to the geometry layer, which ranks from it (``preprocess.geometry.order``).
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from preprocess.backends import Backend, Registry
from preprocess.config import DepthConfig


class DepthBackend(Backend[DepthConfig]):
    """Estimates relative inverse depth (larger = nearer), normalised to [0, 1] per frame."""

    kind = "depth"

    @abstractmethod
    def clip_depth(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray | None:
        """(T, H, W, 3) uint8 -> (T, h, w) float32 in [0, 1], or None for weightless ranking."""

    def model_file(self) -> str:
        return self.cfg.model


DEPTH_BACKENDS: Registry[DepthBackend] = Registry("depth")


def create_depth_backend(cfg: DepthConfig) -> DepthBackend:
    """The configured depth backend (``depth.backend``); unknown names list the available ones."""
    return DEPTH_BACKENDS.create(cfg)
