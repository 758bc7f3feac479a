"""Small media helpers shared by tests (reading real frames with OpenCV, independently of
the decord path under test)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_frames(path: Path, n: int) -> np.ndarray:
    """The first ``n`` frames of a video as (n, H, W, 3) uint8 RGB."""
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while len(frames) < n:
        ok, bgr = cap.read()
        assert ok, f"could not read {n} frames from {path}"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)
