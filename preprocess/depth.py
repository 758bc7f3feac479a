"""Depth backends: relative inverse depth per frame, used to rank characters front to back.

``heuristic`` needs no weights and produces no depth map: ranks then come from
``preprocess.geometry.nearness_from_feet`` (the lower a character's lowest confident keypoint
in the image, the nearer), and shards carry no ``depth`` field. ``depth_anything``
(``preprocess/depth_anything.py``, registered at the end of this module) runs Depth Anything;
ranks then come from its map (``preprocess.geometry.nearness_from_depth``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from preprocess.config import DepthConfig
from preprocess.registry import Registry
from preprocess.weights_id import backend_identity

DEPTH_BACKENDS: Registry[DepthBackend] = Registry("depth")


class DepthBackend(ABC):
    """Estimates relative inverse depth (larger = nearer), normalised to [0, 1] per frame."""

    name: ClassVar[str]

    def __init__(self, cfg: DepthConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def clip_depth(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray | None:
        """(T, H, W, 3) uint8 -> (T, h, w) float32 in [0, 1], or None for weightless ranking."""

    def identity(self) -> dict[str, object]:
        return backend_identity(self.name, self.cfg.model)


@DEPTH_BACKENDS.register("heuristic")
class HeuristicDepth(DepthBackend):
    """No depth map; characters are ranked by the height of their feet in the frame."""

    name = "heuristic"

    def clip_depth(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray | None:
        return None

    def identity(self) -> dict[str, object]:
        return backend_identity(self.name, rule="lowest confident keypoint is nearest")


def create_depth_backend(cfg: DepthConfig) -> DepthBackend:
    """The configured depth backend (``depth.backend``)."""
    return DEPTH_BACKENDS.get(cfg.backend)(cfg)


from preprocess import depth_anything  # noqa: E402, F401  (registers "depth_anything")
