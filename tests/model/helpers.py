"""Tiny random-weight models and inputs for the model tests (plumbing only: outputs are noise)."""

from __future__ import annotations

import torch

from model.composed import AnimationModel
from model.config import ModelConfig, preset_config
from model.guiders import Conditions

# Pixel size of the test clips: latents are 8x6, the tiny UNet halves them once.
HEIGHT, WIDTH = 64, 48


def tiny_model(*, motion: bool = False, seed: int = 0) -> AnimationModel:
    cfg = preset_config("tiny", motion=motion)
    cfg.seed = seed
    return AnimationModel.from_config(cfg).eval()


def tiny_cfg(*, motion: bool = False) -> ModelConfig:
    return preset_config("tiny", motion=motion)


def conditions(b: int, f: int, *, seed: int = 0) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    return Conditions(
        pose=torch.rand(b, f, 3, HEIGHT, WIDTH, generator=g),
        flow=torch.rand(b, f, 2, HEIGHT, WIDTH, generator=g) * 2 - 1,
        order=torch.rand(b, f, 1, HEIGHT, WIDTH, generator=g),
        reference_pose=torch.rand(b, 1, 3, HEIGHT, WIDTH, generator=g),
    )


def inputs(b: int, f: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """noisy_latents (B, F, 4, h, w), timesteps (B,), reference_latents, clip_embeds (B, 32)."""
    g = torch.Generator().manual_seed(seed)
    h, w = HEIGHT // 8, WIDTH // 8
    return {
        "noisy_latents": torch.randn(b, f, 4, h, w, generator=g),
        "timesteps": torch.randint(0, 1000, (b,), generator=g),
        "reference_latents": torch.randn(b, 4, h, w, generator=g),
        "clip_embeds": torch.randn(b, 32, generator=g),
    }


def perturb_(module: torch.nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    """Overwrite every parameter with fresh noise (e.g. to un-zero a zero-initialised layer)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
