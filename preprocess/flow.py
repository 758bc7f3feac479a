"""Optical-flow backends: backward flow F_i = E(v_i, v_{i-1}) of every stored frame.

Flow is computed at the map resolution (stored size / ``geometry.map_downscale``) and
expressed in stored-frame pixels per frame, so statistics do not depend on the map size.
``F_0 = 0`` for the first frame of every clip (DESIGN §3).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

import cv2
import numpy as np

from preprocess.config import FlowConfig
from preprocess.registry import Registry
from preprocess.weights_id import backend_identity

log = logging.getLogger(__name__)

FLOW_BACKENDS: Registry[FlowBackend] = Registry("flow")


class FlowBackend(ABC):
    """Computes backward flow for a clip. Learned backends load their weights in ``__init__``."""

    name: ClassVar[str]

    def __init__(self, cfg: FlowConfig) -> None:
        self.cfg = cfg

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """Per-frame input of :meth:`pair_flow` from a (h, w, 3) uint8 RGB map-size frame."""
        return frame

    @abstractmethod
    def pair_flow(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Flow from ``current`` to ``previous`` on current's grid, in map pixels.

        Inputs come from :meth:`prepare`; returns (h, w, 2) float32 such that
        ``current(x) ~ previous(x + flow(x))``.
        """

    def clip_flow(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
        """Backward flow of a clip: (T, H, W, 3) uint8 -> (T, h, w, 2) float32 stored px/frame."""
        t, height, width = frames.shape[:3]
        h, w = map_size
        small = [self.prepare(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)) for f in frames]
        flow = np.zeros((t, h, w, 2), np.float32)  # (T, h, w, 2); F_0 = 0
        for i in range(1, t):
            flow[i] = self.pair_flow(small[i], small[i - 1])
        flow[..., 0] *= width / w  # map px -> stored px
        flow[..., 1] *= height / h
        return flow

    def identity(self) -> dict[str, object]:
        return backend_identity(self.name, self.cfg.weights)


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@FLOW_BACKENDS.register("dis")
class DISFlow(FlowBackend):
    """OpenCV's Dense Inverse Search flow (no weights), on grayscale frames."""

    name = "dis"

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__(cfg)
        if cfg.preset not in _DIS_PRESETS:
            raise ValueError(
                f"flow.preset={cfg.preset!r} is not a DIS preset; use one of {sorted(_DIS_PRESETS)}"
            )
        self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[cfg.preset])  # type: ignore[attr-defined]

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)  # (h, w) uint8

    def pair_flow(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return self._dis.calc(current, previous, None)  # (h, w, 2) float32

    def identity(self) -> dict[str, object]:
        return backend_identity(self.name, preset=self.cfg.preset)


def create_flow_backend(cfg: FlowConfig) -> FlowBackend:
    """The configured flow backend (``flow.backend``)."""
    return FLOW_BACKENDS.get(cfg.backend)(cfg)


from preprocess import pwcnet  # noqa: E402, F401  (registers "pwcnet"; torch loads lazily)
