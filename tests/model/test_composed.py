"""The composed model on the tiny preset: shapes, determinism, the forward's decomposition."""

from __future__ import annotations

import pytest
import torch

from model.composed import AnimationModel
from tests.model.helpers import HEIGHT, WIDTH, conditions, inputs, perturb_, tiny_cfg, tiny_model


@pytest.mark.parametrize("motion", [False, True])
@torch.no_grad()
def test_forward_shapes(motion: bool) -> None:
    model = tiny_model(motion=motion)
    x = inputs(2, 3)
    out = model(**x, conditions=conditions(2, 3))
    assert out.shape == x["noisy_latents"].shape == (2, 3, 4, HEIGHT // 8, WIDTH // 8)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_vae_and_clip_shapes() -> None:
    model = tiny_model()
    images = torch.rand(3, 3, HEIGHT, WIDTH) * 2 - 1
    latents = model.encode_images(images)
    assert latents.shape == (3, 4, HEIGHT // 8, WIDTH // 8)
    assert model.decode_latents(latents).shape == images.shape
    size = model.cfg.image_encoder.image_size
    embeds = model.embed_reference(torch.randn(2, 3, size, size))
    assert embeds.shape == (2, model.cfg.unet.cross_attention_dim)


@torch.no_grad()
def test_seeded_initialisation_and_forward_are_deterministic() -> None:
    x = inputs(1, 2)
    cond = conditions(1, 2)
    a, b, c = tiny_model(seed=3), tiny_model(seed=3), tiny_model(seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert torch.equal(a(**x, conditions=cond), b(**x, conditions=cond))
    assert not torch.allclose(a(**x, conditions=cond), c(**x, conditions=cond), atol=1e-4)


def test_initialisation_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model(seed=9)
    assert torch.equal(torch.rand(3), expected)


@torch.no_grad()
def test_forward_is_guide_plus_reference_plus_denoise() -> None:
    model = tiny_model(motion=True)
    perturb_(model.guiders, scale=0.05)
    x = inputs(2, 2)
    cond = conditions(2, 2)
    reference = model.encode_reference(x["reference_latents"], x["clip_embeds"])
    manual = model.denoise(
        x["noisy_latents"], x["timesteps"], x["clip_embeds"], model.guide(cond), reference
    )
    torch.testing.assert_close(model(**x, conditions=cond), manual)


def test_unused_reference_parameters_are_exactly_those_without_gradient() -> None:
    model = tiny_model()
    perturb_(model.guiders, scale=0.05)
    x = inputs(1, 2)
    model(**x, conditions=conditions(1, 2)).square().mean().backward()
    no_grad = {
        n for n, p in model.named_parameters() if n.startswith("reference_unet.") and p.grad is None
    }
    assert no_grad == set(model.unused_reference_parameters())
    assert all(p.grad is not None for p in model.unet.parameters())
    assert all(p.grad is not None for p in model.guiders.parameters())


@torch.no_grad()
def test_bfloat16_forward_runs() -> None:
    model = tiny_model(motion=True).to(torch.bfloat16)
    x = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs(1, 2).items()}
    out = model(**x, conditions=conditions(1, 2))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 2, 4, HEIGHT // 8, WIDTH // 8)


def test_motion_config_needs_an_adapter() -> None:
    from model.components import build_image_encoder, build_unet, build_vae
    from model.guiders import Guiders

    cfg = tiny_cfg(motion=True)
    with pytest.raises(ValueError, match="motion adapter"):
        AnimationModel(
            cfg,
            vae=build_vae(cfg),
            image_encoder=build_image_encoder(cfg),
            reference_unet=build_unet(cfg),
            unet=build_unet(cfg),
            guiders=Guiders(cfg.guiders, 32),
        )


def test_add_motion_modules_turns_stage1_into_stage2() -> None:
    from model.motion import build_motion_adapter

    model = tiny_model()
    model.add_motion_modules(build_motion_adapter(model.cfg))
    assert model.cfg.motion.enabled
    assert type(model.unet).__name__ == "UNetMotionModel"
    with pytest.raises(ValueError, match="already"):
        model.add_motion_modules(build_motion_adapter(model.cfg))
