"""DIS flow backend: backward flow in stored pixels, F_0 = 0, sign and scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocess.config import FlowConfig
from preprocess.flow import FLOW_BACKENDS, create_flow_backend


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture (blurred noise), RGB uint8."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def shifted_clip(
    shifts: list[tuple[float, float]], size: tuple[int, int] = (240, 320)
) -> np.ndarray:
    """Frames of a crop window moving over a larger texture by the given per-frame shifts."""
    h, w = size
    big = textured(h + 80, w + 80)
    x, y = 40.0, 40.0
    frames = []
    for dx, dy in [(0.0, 0.0), *shifts]:
        x, y = x + dx, y + dy
        m = np.float32([[1, 0, -x], [0, 1, -y]])
        frames.append(cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR))
    return np.stack(frames)


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_translation_is_recovered_in_stored_pixels(preset: str) -> None:
    # The camera window moves right by 8 px per frame, so content moves left: frame i's pixel
    # x was at x + 8 in frame i-1, i.e. backward flow = +8 in x (stored pixels).
    frames = shifted_clip([(8.0, 0.0), (8.0, 0.0), (0.0, -6.0)])
    flow = create_flow_backend(FlowConfig(preset=preset)).clip_flow(frames, (60, 80))
    assert flow.shape == (4, 60, 80, 2)
    assert flow.dtype == np.float32
    assert np.all(flow[0] == 0)
    inner = flow[:, 8:-8, 8:-8]
    np.testing.assert_allclose(np.median(inner[1], axis=(0, 1)), [8.0, 0.0], atol=0.5)
    np.testing.assert_allclose(np.median(inner[3], axis=(0, 1)), [0.0, -6.0], atol=0.5)


def test_static_clip_has_near_zero_flow() -> None:
    frames = shifted_clip([(0.0, 0.0)] * 3)
    flow = create_flow_backend(FlowConfig()).clip_flow(frames, (60, 80))
    assert np.abs(flow).max() < 0.05


def test_flow_scale_does_not_depend_on_map_size() -> None:
    frames = shifted_clip([(6.0, 4.0)])
    backend = create_flow_backend(FlowConfig())
    coarse = np.median(backend.clip_flow(frames, (60, 80))[1, 8:-8, 8:-8], axis=(0, 1))
    fine = np.median(backend.clip_flow(frames, (120, 160))[1, 16:-16, 16:-16], axis=(0, 1))
    np.testing.assert_allclose(coarse, fine, atol=0.5)
    np.testing.assert_allclose(fine, [6.0, 4.0], atol=0.5)


def test_unknown_backend_and_preset_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="available: dis"):
        create_flow_backend(FlowConfig(backend="raft"))
    with pytest.raises(ValueError, match="not a DIS preset"):
        create_flow_backend(FlowConfig(preset="slow"))
    assert "dis" in FLOW_BACKENDS.names()
