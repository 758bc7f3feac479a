"""Background flow and the flow guider input (preprocess.geometry.flow), docs/design.md §3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess import geometry as G

# --- flow: hand-computed --------------------------------------------------------------------


def test_background_flow_of_a_translation_with_a_masked_region() -> None:
    flow = np.zeros((4, 6, 2), np.float32)
    flow[:, :3] = (3, 4)  # left half: |F| = 5
    flow[:, 3:] = (0, 1)  # right half: |F| = 1
    union = np.zeros((4, 6), bool)
    union[:, 4:] = True  # masks 8 of the 12 right-half pixels
    flow[union] = (100, 0)  # character motion: must not count
    bg = G.background_flow(flow, union)
    assert bg.shape == flow.shape and not bg[union].any()
    assert np.array_equal(bg[~union], flow[~union])
    # 12 px of 5 and 4 px of 1 -> 64 / 16 = 4
    assert G.background_flow_magnitude(flow, union) == pytest.approx(4.0)
    assert math.isnan(G.background_flow_magnitude(flow, np.ones((4, 6), bool)))


def test_flow_guider_input() -> None:
    flow = np.zeros((2, 3, 4, 2), np.float32)  # (T, h, w, 2)
    flow[..., 0], flow[..., 1] = 20.0, -10.0
    union = np.zeros((2, 3, 4), bool)
    union[1, :, :2] = True
    x = G.flow_guider_input(flow, union, 10.0)
    assert x.dtype == np.float32 and x.shape == flow.shape
    assert (x[union] == 1.0).all()
    assert (x[~union] == [2.0, -1.0]).all()
    assert np.array_equal(G.flow_guider_input(flow[1], union[1], 10.0), x[1])


# --- properties --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.5, 20.0))
def test_flow_inside_the_mask_never_matters(seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    flow = rng.normal(0, 3, (12, 16, 2)).astype(np.float32)
    union = rng.random((12, 16)) < 0.4
    other = flow.copy()
    other[union] = rng.normal(0, 50, (int(union.sum()), 2))
    b = G.background_flow_magnitude(flow, union)
    assert b == pytest.approx(G.background_flow_magnitude(other, union), nan_ok=True)
    assert np.array_equal(G.background_flow(flow, union), G.background_flow(other, union))
    x = G.flow_guider_input(other, union, scale)
    assert (x[union] == 1.0).all()
    np.testing.assert_allclose(x[~union], flow[~union] / scale, rtol=1e-6)
    if (~union).any():
        assert b == pytest.approx(float(np.linalg.norm(flow[~union], axis=-1).mean()), rel=1e-5)
