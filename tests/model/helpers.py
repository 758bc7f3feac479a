"""Tiny random-weight models and inputs for the model tests (plumbing only: outputs are noise)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch

from model.composed import AnimationModel
from model.config import ModelConfig, preset_config
from model.guiders import Conditions
from shards.config import describe_keys

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


def assert_help_explains_everything(
    parser: argparse.ArgumentParser, cls: type, nested: tuple[str, ...]
) -> str:
    """An entry point's ``--help``: every option it shows has help text (no placeholder), every
    dotted key of ``cls`` has a docstring and is named in the epilog, ``nested`` keys included.
    Returns the help text."""
    text = parser.format_help()
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS]
    for action in shown:
        name = action.option_strings or [action.dest]
        assert action.help and action.help.strip(), f"{name} has no help text"
        assert "(no description)" not in action.help, f"{name}: its key has no docstring"
    for item in describe_keys(cls):
        assert item.doc, f"config key {item.key} of {cls.__name__} has no docstring"
        assert f"  {item.key}{'.*' if item.group else ':'}" in text, f"{item.key} not in --help"
    for key in nested:
        assert "." in key and f"  {key}: " in text, key
    return text


def help_exits_cleanly(main: Any, capsys: Any) -> str:
    """``main(["--help"])`` exits 0 and prints the help; returns it."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    return str(capsys.readouterr().out)
