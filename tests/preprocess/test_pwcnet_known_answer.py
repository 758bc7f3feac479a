"""PWC-Net (``flow.backend=pwcnet``) with constructed weights whose output is known by hand.

No reference implementation installs here (mmflow needs mmcv's compiled ops), so the numbers
are checked against answers derived in this file. The constructed network (:func:`constructed`):
every pyramid conv passes chosen colour channels through its centre tap (level l = the [0, 1]
BGR image sampled every 2**l pixels); every decoder and the context network are zero except
the few weights a test sets: level 2's flow head reading the cost volume, level 3's flow
upsampler's bias (a constant flow to warp with), level 2's flow bias (a constant flow). The
checkpoint goes through MMFlow's key names and the backend, as the public file would.

What is checked: the flow's scale to stored pixels (x flow_div, the resize to multiples of 64
and back), its direction (backward flow of frame i: v_i(x) ~ v_{i-1}(x + F_i(x)),
docs/design.md §3), the warp of level l by flow x flow_div / 2**l, the cost volume against a
brute-force one computed here, and the input channel order (BGR, as MMFlow).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from preprocess.config import FlowConfig
from preprocess.flow import FlowBackend, create_flow_backend
from preprocess.flow.pwcnet.checkpoint import mmflow_key_map
from preprocess.flow.pwcnet.net import FlowEstimator, PWCNet, PWCNetConfig, correlation

D = 4  # MMFlow's max displacement: 81 cost channels (dy + 4) * 9 + (dx + 4)
SIDE = 2 * D + 1
KNOWN = PWCNetConfig(
    pyramid_channels=(3,) * 6,
    convs_per_level=2,
    dense_channels=(2,),
    context_channels=(2,) * 6,
    max_displacement=D,
)
COST = sum(KNOWN.dense_channels)  # level 2's decoder input: [dense..., cost, f1, flow, feat]
FLOW_DIV = 20.0
UPSAMPLE_MEAN = 0.75**2  # a level-2 impulse, upsampled x4 (bilinear) then area-averaged x4


def constructed(channels: tuple[int, ...] = (0, 1, 2)) -> PWCNet:
    """All weights 0 but the pyramid: feature k of every level = input channel channels[k]
    (BGR order), sampled by the stride-2 convs' centre taps."""
    net = PWCNet(KNOWN)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for i, level in enumerate(net.pyramid):
            convs = [m for m in level.modules() if isinstance(m, nn.Conv2d)]
            for j, conv in enumerate(convs):
                for k, c in enumerate(channels):
                    conv.weight[k, c if i == j == 0 else k, 1, 1] = 1.0
    return net


def estimator(net: PWCNet, level: int) -> FlowEstimator:
    """The decoder of pyramid level ``level``."""
    return cast(FlowEstimator, net.estimators[f"level{level}"])


def head(net: PWCNet) -> nn.Conv2d:
    """Level 2's flow head: its input is [dense outputs, cost volume, f1, up flow, up feat]."""
    return estimator(net, 2).predict


def read_displacement(net: PWCNet, gain: float) -> None:
    """Level 2's flow = gain * sum_d cost_d * (dx, dy): the displacement of an impulse."""
    with torch.no_grad():
        for c in range(SIDE * SIDE):
            dy, dx = divmod(c, SIDE)
            head(net).weight[0, COST + c, 1, 1] = gain * (dx - D)
            head(net).weight[1, COST + c, 1, 1] = gain * (dy - D)


def backend(net: PWCNet, path: Path) -> FlowBackend:
    """The flow backend on ``net``'s weights, saved under MMFlow's checkpoint keys."""
    ours = net.state_dict()
    state = {mm: ours[name].clone() for mm, name in mmflow_key_map(net.cfg).items()}
    torch.save({"meta": {"note": "constructed"}, "state_dict": state}, path)
    return create_flow_backend(FlowConfig(backend="pwcnet", weights=str(path), device="cpu"))


def blocks(hw: tuple[int, int], *corners: tuple[int, int]) -> np.ndarray:
    """(len(corners), H, W, 3) uint8 frames, black with a white 4x4 block at each (y, x)."""
    frames = np.zeros((len(corners), *hw, 3), np.uint8)
    for t, (y, x) in enumerate(corners):
        frames[t, y : y + 4, x : x + 4] = 255
    return frames


def test_flow_is_in_stored_pixels(tmp_path: Path) -> None:
    """Level 2 predicts (0.5, -0.25) everywhere: the flow is that x flow_div, at the 64-multiple
    size, rescaled to the frame (x by W / W_64, y by H / H_64), the same at the map."""
    net = constructed()
    with torch.no_grad():
        head(net).bias.copy_(torch.tensor([0.5, -0.25]))  # type: ignore[union-attr]
    flow = backend(net, tmp_path / "pwc.pth")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 100, 170, 3), dtype=np.uint8)  # run at 128 x 192
    want = np.array([0.5 * FLOW_DIV * 170 / 192, -0.25 * FLOW_DIV * 100 / 128])  # x != y scale
    full = flow.pair_flow(frames[1], frames[0])  # (100, 170, 2)
    np.testing.assert_allclose(full, np.broadcast_to(want, (100, 170, 2)), rtol=1e-5)
    maps = flow.clip_flow(frames, (25, 42))
    assert (maps[0] == 0).all()  # F_0 = 0
    np.testing.assert_allclose(maps[1:], np.broadcast_to(want, (2, 25, 42, 2)), rtol=1e-5)


def test_flow_is_backward_from_each_frame_to_the_previous(tmp_path: Path) -> None:
    """Frame 1 has a white block at level-2 cell p, frame 0 at p + s: the flow of frame 1 at p
    points to p + s (v_1(x) = v_0(x + F_1(x))), and nothing points from p + s."""
    net = constructed(channels=(0,))  # white: feature 1 on the block
    read_displacement(net, 4 / FLOW_DIV)  # 1 level-2 px = 4 stored px
    p, s = np.array([12, 20]), np.array([-2, 3])  # (y, x) level-2 cells
    frames = blocks((128, 192), tuple(4 * (p + s)), tuple(4 * p))  # v_0, v_1
    maps = backend(net, tmp_path / "pwc.pth").clip_flow(frames, (32, 48))  # (2, 32, 48, 2)
    want = 4 * s[::-1] * UPSAMPLE_MEAN  # (x, y) stored px, the impulse spread by the upsample
    np.testing.assert_allclose(maps[1, p[0], p[1]], want, atol=1e-4)
    np.testing.assert_allclose(maps[1, p[0] + s[0], p[1] + s[1]], 0.0, atol=1e-6)
    assert (maps[0] == 0).all()


@pytest.mark.parametrize("upflow", [(0.4, 0.2), (0.6, -0.2)])
def test_level_2_warps_by_upsampled_flow_times_flow_div_over_4(
    tmp_path: Path, upflow: tuple[float, float]
) -> None:
    """Level 3 hands level 2 a constant upsampled flow u: frame 0's features are warped by
    u * 20 / 2**2 = 5u level-2 px before the cost volume, so the impulse seen at p moves from
    p + s to p + s - 5u."""
    net = constructed(channels=(0,))
    read_displacement(net, 4 / FLOW_DIV)
    with torch.no_grad():
        up_flow = estimator(net, 3).up_flow
        assert up_flow is not None and up_flow.bias is not None
        up_flow.bias.copy_(torch.tensor(upflow))
    p, s = np.array([12, 20]), np.array([-2, 3])
    frames = blocks((128, 192), tuple(4 * (p + s)), tuple(4 * p))
    maps = backend(net, tmp_path / "pwc.pth").clip_flow(frames, (32, 48))
    shift = np.array(upflow) * FLOW_DIV / 2**2  # (x, y) level-2 px: integers here
    want = 4 * (s[::-1] - shift) * UPSAMPLE_MEAN
    np.testing.assert_allclose(maps[1, p[0], p[1]], want, atol=1e-4)


def brute_force_cost(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """(C, H, W) x2 -> (81, H, W): sum_c f1(c, y, x) * f2(c, y + dy, x + dx), 0 outside."""
    _, h, w = f1.shape
    out = np.zeros((SIDE * SIDE, h, w))
    for dy in range(-D, D + 1):
        for dx in range(-D, D + 1):
            for y in range(h):
                for x in range(w):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        out[(dy + D) * SIDE + dx + D, y, x] = f1[:, y, x] @ f2[:, y + dy, x + dx]
    return out


def test_correlation_is_the_brute_force_cost_volume() -> None:
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(2, 2, 5, 7, 9)).astype(np.float32)  # (B, C, H, W) each
    got = correlation(torch.from_numpy(f1), torch.from_numpy(f2), D).numpy()  # (B, 81, H, W)
    for b in range(2):
        np.testing.assert_allclose(got[b], brute_force_cost(f1[b], f2[b]), rtol=1e-5, atol=1e-5)


def test_network_cost_volume_is_the_brute_force_one_on_the_level_2_images() -> None:
    """Level 2's flow head reads two cost channels: the net's output (before upsampling) is
    LeakyReLU of the brute-force cost volume of the two images sampled every 4 pixels."""
    rng = np.random.default_rng(2)
    img1, img2 = rng.random((2, 1, 3, 64, 128), dtype=np.float32)  # [0, 1] BGR
    cost = brute_force_cost(img1[0, :, ::4, ::4], img2[0, :, ::4, ::4])  # (81, 16, 32)
    leaky = np.where(cost > 0, cost, 0.1 * cost)
    net = constructed()
    for cx, cy in ((0, 80), (40, 13), (53, 27), (71, 8)):
        with torch.no_grad():
            head(net).weight.zero_()
            head(net).weight[0, COST + cx, 1, 1] = 1.0
            head(net).weight[1, COST + cy, 1, 1] = 1.0
            out = net(torch.from_numpy(img1), torch.from_numpy(img2))[0].numpy()  # (2, 16, 32)
        np.testing.assert_allclose(out, leaky[[cx, cy]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("channel", "rgb_index"), [(0, 2), (2, 0)])
def test_input_is_bgr_scaled_to_unit_range(tmp_path: Path, channel: int, rgb_index: int) -> None:
    """Features of BGR channel ``channel`` only, flow x = the zero-displacement cost: for two
    frames of one colour that is flow_div * (value / 255)**2 with the value of that channel."""
    net = constructed(channels=(channel,))
    with torch.no_grad():
        head(net).weight[0, COST + D * SIDE + D, 1, 1] = 1.0
    colour = (200, 60, 20)  # RGB
    frames = np.broadcast_to(np.array(colour, np.uint8), (2, 128, 192, 3)).copy()
    flow = backend(net, tmp_path / "pwc.pth").pair_flow(frames[1], frames[0])
    want = FLOW_DIV * (colour[rgb_index] / 255) ** 2  # 0.123 (B) or 12.30 (R)
    np.testing.assert_allclose(flow[..., 0], want, rtol=1e-5)
    np.testing.assert_allclose(flow[..., 1], 0.0, atol=1e-7)
