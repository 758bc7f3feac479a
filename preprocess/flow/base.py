"""Optical-flow backend interface and its registry: backward flow F_i = E(v_i, v_{i-1}).

Flow is computed at the map resolution (stored size / ``geometry.map_downscale``) and
expressed in stored-frame pixels per frame, so statistics do not depend on the map size.
``F_0 = 0`` for the first frame of every clip (docs/design.md §3). A backend has the shape of every
extractor backend (:class:`preprocess.backends.Backend`: built from ``cfg.flow``,
``.device``, ``.identity()``); the flow stage (``preprocess.stages``) calls
:meth:`FlowBackend.clip_flow` and hands the field to the geometry layer.
"""

from __future__ import annotations

from abc import abstractmethod

import cv2
import numpy as np

from preprocess.backends import Backend, Registry
from preprocess.config import FlowConfig


class FlowBackend(Backend[FlowConfig]):
    """Computes backward flow for a clip. Learned backends load their weights in ``__init__``."""

    kind = "flow"

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

    def model_file(self) -> str:
        return self.cfg.weights


FLOW_BACKENDS: Registry[FlowBackend] = Registry("flow")


def create_flow_backend(cfg: FlowConfig) -> FlowBackend:
    """The configured flow backend (``flow.backend``); unknown names list the available ones."""
    return FLOW_BACKENDS.create(cfg)
