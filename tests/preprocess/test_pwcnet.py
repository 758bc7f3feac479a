"""PWC-Net port (``flow.backend=pwcnet``): MMFlow key map, cost volume, warp, pre/post-processing.

mmflow cannot be installed here (mmcv has no wheels for this torch; see DEPENDENCIES.md), so the
key map is checked against :func:`preprocess.standins.mmflow_pwcnet`, a module tree laid out
as MMFlow's source builds PWC-Net, at full size (the 126 tensors of the public checkpoints)
and at a tiny width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from preprocess.config import FlowConfig
from preprocess.flow import create_flow_backend
from preprocess.flow.pwcnet import PWCNetFlow
from preprocess.flow.pwcnet.checkpoint import (
    config_from_state_dict,
    convert_state_dict,
    load_mmflow_pwcnet,
    mmflow_key_map,
)
from preprocess.flow.pwcnet.net import PWCNet, PWCNetConfig, correlation, estimate_flow, warp
from preprocess.standins import TINY_PWCNET, mmflow_pwcnet, write_pwcnet_checkpoint


def test_key_map_covers_mmflows_full_size_tree_exactly() -> None:
    mm = mmflow_pwcnet().state_dict()
    assert len(mm) == 126
    mapping = mmflow_key_map(PWCNetConfig())
    assert set(mapping) == set(mm)  # every checkpoint key mapped, no extra
    ours = PWCNet().state_dict()
    assert sorted(mapping.values()) == sorted(ours)  # every parameter of ours filled once
    for src, dst in mapping.items():
        assert mm[src].shape == ours[dst].shape, (src, dst)
    assert config_from_state_dict(mm) == PWCNetConfig()
    assert sum(v.numel() for v in mm.values()) == 9_374_274  # PWC-Net's ~9.37 M parameters


def test_checkpoint_loads_strictly_and_refuses_leftovers(tmp_path: Path) -> None:
    path = write_pwcnet_checkpoint(tmp_path / "pwc.pth", TINY_PWCNET, seed=3)
    net = load_mmflow_pwcnet(path)
    assert net.cfg == TINY_PWCNET
    state = torch.load(path, weights_only=True)["state_dict"]
    for src, dst in mmflow_key_map(net.cfg).items():
        torch.testing.assert_close(net.state_dict()[dst], state[src])
    extra = dict(state, **{"decoder.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"1 unexpected keys \['decoder.extra.weight'\]"):
        convert_state_dict(extra, net)
    fewer = {k: v for k, v in state.items() if "upfeat_layer" not in k}
    with pytest.raises(ValueError, match="8 missing keys"):
        convert_state_dict(fewer, net)
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not an MMFlow PWC-Net checkpoint"):
        load_mmflow_pwcnet(tmp_path / "bad.pth")


def test_correlation_matches_the_definition_and_finds_a_shift() -> None:
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(2, 5, 7, 9, generator=g)
    f2 = torch.randn(2, 5, 7, 9, generator=g)
    out = correlation(f1, f2, 2)
    assert out.shape == (2, 25, 7, 9)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            c = (dy + 2) * 5 + (dx + 2)
            for y, x in ((0, 0), (3, 4), (6, 8)):
                yy, xx = y + dy, x + dx
                want = (
                    (f1[:, :, y, x] * f2[:, :, yy, xx]).sum(1)
                    if 0 <= yy < 7 and 0 <= xx < 9
                    else torch.zeros(2)
                )
                torch.testing.assert_close(out[:, c, y, x], want)
    # f2 = f1 moved by (+1 right, -2 up): the best match of f1(x) is f2(x + (1, -2))
    wide = torch.randn(2, 64, 7, 9, generator=g)
    shifted = torch.roll(wide, shifts=(-2, 1), dims=(2, 3))
    best = correlation(wide, shifted, 2)[:, :, 2:5, 1:8].argmax(1)
    assert (best == (-2 + 2) * 5 + (1 + 2)).all()


def test_warp_samples_at_x_plus_flow_and_masks_outside() -> None:
    feat = torch.arange(30.0).view(1, 1, 5, 6)
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 2.0  # sample two pixels to the right
    flow[:, 1] = -1.0  # and one up
    out = warp(feat, flow)
    torch.testing.assert_close(out[0, 0, 1:, :4], feat[0, 0, :4, 2:])
    assert (out[0, 0, 0] == 0).all() and (out[0, 0, :, 4:] == 0).all()


def test_output_shape_padding_and_scale_follow_mmflow() -> None:
    """All weights 0 but level 2's flow bias b: the net predicts b / 1 everywhere, so the
    output must be b * flow_div resized back from the 64-multiple size with x scaled by
    W / W_64 and y by H / H_64."""
    net = PWCNet(TINY_PWCNET)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.estimators["level2"].predict.bias.copy_(torch.tensor([0.5, -0.25]))
    h, w = 100, 150  # -> 128 x 192
    img = torch.rand(3, 3, h, w) * 255
    flow = estimate_flow(net, img, img)
    assert flow.shape == (3, 2, h, w)
    torch.testing.assert_close(flow[:, 0], torch.full((3, h, w), 0.5 * 20 * w / 192))
    torch.testing.assert_close(flow[:, 1], torch.full((3, h, w), -0.25 * 20 * h / 128))
    exact = torch.rand(1, 3, 128, 192) * 255  # already a multiple of 64: no resize
    torch.testing.assert_close(estimate_flow(net, exact, exact)[0, 0], torch.full((128, 192), 10.0))


def test_backend_gives_backward_flow_at_map_resolution_batched(tmp_path: Path) -> None:
    path = write_pwcnet_checkpoint(tmp_path / "pwc.pth", TINY_PWCNET)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (5, 96, 128, 3), dtype=np.uint8)
    one = create_flow_backend(FlowConfig(backend="pwcnet", weights=str(path), batch_size=1))
    many = create_flow_backend(FlowConfig(backend="pwcnet", weights=str(path), batch_size=3))
    assert isinstance(one, PWCNetFlow) and one.device == "cpu"
    a, b = one.clip_flow(frames, (24, 32)), many.clip_flow(frames, (24, 32))
    assert a.shape == (5, 24, 32, 2) and a.dtype == np.float32
    assert (a[0] == 0).all() and np.abs(a[1:]).max() > 0
    np.testing.assert_allclose(a, b, atol=1e-4)
    # pair i is (current v_i, previous v_{i-1}), in stored pixels, area-averaged to the map
    full = one.pair_flow(frames[2], frames[1])  # (96, 128, 2)
    want = full.reshape(24, 4, 32, 4, 2).mean((1, 3))
    np.testing.assert_allclose(a[2], want, atol=1e-4)
    assert one.identity()["sha256"] is not None


def test_missing_checkpoint_names_key_and_url(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"flow\.weights.*download\.openmmlab\.com"):
        create_flow_backend(FlowConfig(backend="pwcnet", weights=str(tmp_path / "no.pth")))
    with pytest.raises(FileNotFoundError, match=r"flow\.weights is not set"):
        create_flow_backend(FlowConfig(backend="pwcnet"))
