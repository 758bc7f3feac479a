"""``flow.backend=dis``: OpenCV's Dense Inverse Search flow, on grayscale map-size frames.

No weights and no GPU path: ``flow.device`` may be ``auto`` or ``cpu`` only. ``flow.preset``
picks OpenCV's quality preset; it is part of the backend's identity.
"""

from __future__ import annotations

import cv2
import numpy as np

from preprocess.config import FlowConfig
from preprocess.flow.base import FLOW_BACKENDS, FlowBackend

DIS_PRESETS = {
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
        if cfg.preset not in DIS_PRESETS:
            raise ValueError(
                f"flow.preset={cfg.preset!r} is not a DIS preset; use one of {sorted(DIS_PRESETS)}"
            )
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[cfg.preset])  # type: ignore[attr-defined]

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)  # (h, w) uint8

    def pair_flow(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return self._dis.calc(current, previous, None)  # (h, w, 2) float32

    def model_file(self) -> str:
        return ""  # no weights

    def identity_extras(self) -> dict[str, object]:
        return {"preset": self.cfg.preset}
