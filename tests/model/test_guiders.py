"""Guiders: structure, shapes, and that zero-initialised guiders leave the UNet unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.guiders import GUIDER_NAMES, Conditions, Guiders
from tests.model.helpers import HEIGHT, WIDTH, conditions, inputs, perturb_, tiny_cfg, tiny_model


def test_each_guider_is_eight_convs_down_to_latent_resolution() -> None:
    cfg = tiny_cfg()
    guiders = Guiders(cfg.guiders, out_channels=32)
    assert sorted(guiders.guiders) == sorted(GUIDER_NAMES)
    for guider in guiders.guiders.values():
        convs = [m for m in guider.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 8
        assert sum(c.stride == (2, 2) for c in convs) == 3  # ÷8
        assert convs[-1].out_channels == 32
        conv_out = guider.conv_out
        assert isinstance(conv_out, nn.Module)
        assert all(not p.detach().any() for p in conv_out.parameters())


def test_c_multi_shape_and_reference_pose_broadcast() -> None:
    cfg = tiny_cfg()
    guiders = Guiders(cfg.guiders, out_channels=32)
    perturb_(guiders)
    cond = conditions(2, 3)
    c_multi = guiders(cond)
    assert c_multi.shape == (2, 3, 32, HEIGHT // 8, WIDTH // 8)
    # The reference pose enters every frame identically: repeating it per frame changes nothing.
    per_frame = Conditions(
        cond.pose, cond.flow, cond.order, cond.reference_pose.expand(-1, 3, -1, -1, -1)
    )
    torch.testing.assert_close(guiders(per_frame), c_multi)
    # c_multi is the sum of the four guiders' outputs.
    total = sum((guiders.embed(n, t) for n, t in cond.tensors().items()), torch.zeros(()))
    torch.testing.assert_close(c_multi, total.expand_as(c_multi))


def test_guiders_are_per_frame() -> None:
    guiders = Guiders(tiny_cfg().guiders, out_channels=32)
    perturb_(guiders)
    cond = conditions(1, 4)
    whole = guiders(cond)
    torch.testing.assert_close(guiders(cond.frames(1, 3)), whole[:, 1:3])


def test_conditions_must_be_multiples_of_eight() -> None:
    guiders = Guiders(tiny_cfg().guiders, out_channels=32)
    cond = conditions(1, 1)
    bad = Conditions(*(t[..., :60, :] for t in cond.tensors().values()))
    with pytest.raises(ValueError, match="multiples of 8"):
        guiders(bad)


@torch.no_grad()
def test_zero_initialised_guiders_leave_the_output_unchanged() -> None:
    model = tiny_model()
    x = inputs(2, 2)
    cond = conditions(2, 2)
    context = x["clip_embeds"]
    reference = model.encode_reference(x["reference_latents"], context)
    plain = model.denoise(x["noisy_latents"], x["timesteps"], context, None, reference)
    guided = model(**x, conditions=cond)
    assert torch.equal(guided, plain)  # exactly: c_multi is all zeros
    # ... and the guiders do reach the UNet once their output projection is non-zero.
    conv_out = model.guiders.guiders["pose"].conv_out
    assert isinstance(conv_out, nn.Module)
    perturb_(conv_out)
    assert not torch.allclose(model(**x, conditions=cond), plain, atol=1e-4)


def test_conditions_from_maps_normalise_uint8_maps_and_refuse_float_ones() -> None:
    maps = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 1, 3, 1, 1)
    flow = torch.tensor([[2.5, -1.0]]).reshape(1, 1, 2, 1, 1)
    cond = Conditions.from_maps(maps, flow, maps[:, :, :1], maps)
    assert cond.pose.flatten().tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    assert cond.order.flatten().tolist() == [0.0] and cond.reference_pose.max() == 1.0
    assert cond.flow.flatten().tolist() == [2.5, -1.0]  # the flow input is kept as is
    assert all(t.dtype == torch.float32 for t in cond.tensors().values())
    half = Conditions.from_maps(maps, flow, maps[:, :, :1], maps, dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in half.tensors().values())
    # maps already in [0, 1] would be divided twice (or never): refused
    with pytest.raises(TypeError, match="pose"):
        Conditions.from_maps(maps.float() / 255, flow, maps[:, :, :1], maps)
    with pytest.raises(TypeError, match="flow"):
        Conditions.from_maps(maps, flow.byte(), maps[:, :, :1], maps)
