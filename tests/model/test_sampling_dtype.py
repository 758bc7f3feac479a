"""Sampling numerics (model/pipeline.py): with the model in bfloat16 (what ``dtype=auto`` gives
on CUDA) the UNet runs in bfloat16, but the latents, the window accumulation and every DDIM
update stay float32, as diffusers' schedulers compute their updates."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import DDIMScheduler

from model import pipeline
from model.config import SamplingConfig
from model.pipeline import blend_windows, encode_reference, guide_frames, sample_latents
from tests.model.helpers import HEIGHT, WIDTH, conditions, tiny_model


def test_window_accumulation_is_float32_whatever_the_predictions() -> None:
    latents = torch.randn(1, 6, 4, 2, 2).to(torch.bfloat16)  # (B, T, 4, h, w)
    value = {0: 1.0, 1: 2.0**-8, 2: 2.0**-8}  # each exact in bfloat16, their sum is not

    def predict(window: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
        return torch.full_like(window, value[span[0]])  # bfloat16 out, like a bf16 UNet

    out = blend_windows(predict, latents, [(0, 4), (1, 5), (2, 6)])
    assert out.dtype == torch.float32
    # Frames 2 and 3 are in all three windows: (1 + 2^-8 + 2^-8) / 3 in float32; a bfloat16
    # sum rounds 1 + 2^-8 back to 1 (8-bit mantissa) and would give 1/3.
    third = (1 + 2**-7) / 3
    expected = [1.0, (1 + 2**-8) / 2, third, third, 2**-8, 2**-8]
    assert out[0, :, 0, 0, 0].tolist() == pytest.approx(expected, rel=1e-6)


def test_bf16_model_keeps_latents_and_ddim_updates_in_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model(motion=True).to(torch.bfloat16)
    seen: dict[str, set[torch.dtype]] = {"unet": set(), "output": set(), "sample": set()}
    step = DDIMScheduler.step

    def spy_step(self: DDIMScheduler, model_output: torch.Tensor, t: Any, sample: torch.Tensor, **kw: Any) -> Any:  # fmt: skip
        seen["output"].add(model_output.dtype)
        seen["sample"].add(sample.dtype)
        return step(self, model_output, t, sample, **kw)

    monkeypatch.setattr(DDIMScheduler, "step", spy_step)
    blended: list[torch.dtype] = []
    blend = pipeline.blend_windows

    def spy_blend(*args: Any) -> torch.Tensor:
        out = blend(*args)
        blended.append(out.dtype)
        return out

    monkeypatch.setattr(pipeline, "blend_windows", spy_blend)
    hook = model.unet.register_forward_pre_hook(lambda _m, args: seen["unet"].add(args[0].dtype))
    try:
        frames = 6
        c_multi = guide_frames(model, conditions(1, frames).frames, frames, chunk=4)
        reference = encode_reference(
            model, torch.randn(1, 4, HEIGHT // 8, WIDTH // 8), torch.randn(1, 32)
        )
        sampling = SamplingConfig(steps=3, window=4, stride=2, height=HEIGHT, width=WIDTH)
        latents = sample_latents(model, reference, c_multi, sampling, progress=False)
    finally:
        hook.remove()
    assert model.dtype == torch.bfloat16 and seen["unet"] == {torch.bfloat16}
    assert latents.dtype == torch.float32
    assert seen["sample"] == {torch.float32} and seen["output"] == {torch.float32}
    assert blended == [torch.float32] * 3
    assert torch.isfinite(latents).all()
