"""Sampling (model/pipeline.py): windows, overlap averaging, CFG, determinism (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.components import build_ddim
from model.config import SamplingConfig
from model.guiders import Conditions
from model.pipeline import (
    Span,
    blend_windows,
    decode_frames,
    encode_reference,
    generate,
    guide_frames,
    guided_prediction,
    reference_inputs,
    sample_latents,
    window_spans,
)
from tests.model.helpers import HEIGHT, WIDTH, conditions, inputs, perturb_, tiny_model


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (1, [(0, 1)]),
        (16, [(0, 16)]),
        (17, [(0, 16), (1, 17)]),
        (21, [(0, 16), (5, 21)]),
        (24, [(0, 16), (8, 24)]),
        (40, [(0, 16), (8, 24), (16, 32), (24, 40)]),
        (41, [(0, 16), (8, 24), (16, 32), (24, 40), (25, 41)]),
    ],
)
def test_window_spans(frames: int, expected: list[Span]) -> None:
    assert window_spans(frames, 16, 8) == expected


@pytest.mark.parametrize("frames", range(1, 70))
def test_windows_have_the_trained_length_and_cover_every_frame(frames: int) -> None:
    spans = window_spans(frames, 16, 8)
    covered = torch.zeros(frames, dtype=torch.long)
    for start, stop in spans:
        assert stop - start == min(16, frames)
        covered[start:stop] += 1
    assert bool((covered >= 1).all())
    # stride 8 of 16: two windows per frame, three where the end-aligned last window adds one
    assert int(covered.max()) <= 3
    assert [s for s, _ in spans] == sorted({s for s, _ in spans})


def test_bad_windowing_is_rejected() -> None:
    with pytest.raises(ValueError, match="windowing"):
        window_spans(10, 16, 0)
    with pytest.raises(ValueError, match="windowing"):
        window_spans(0, 16, 8)


def test_blending_reproduces_a_consistent_prediction_exactly() -> None:
    """When every window predicts the same thing for a frame, the average is that thing:
    each frame's weights sum to one, for any number of windows."""
    target = torch.randn(2, 37, 4, 3, 5)
    latents = torch.zeros_like(target)
    out = blend_windows(
        lambda _, span: target[:, span[0] : span[1]], latents, window_spans(37, 16, 8)
    )
    torch.testing.assert_close(out, target, rtol=0, atol=1e-6)


def test_blending_averages_the_windows_of_each_frame() -> None:
    latents = torch.zeros(1, 21, 1)
    spans = window_spans(21, 16, 8)  # [(0, 16), (5, 21)]

    def predict(window: torch.Tensor, span: Span) -> torch.Tensor:
        return torch.full_like(window, float(span[0] + 1))  # window 1 -> 1.0, window 2 -> 6.0

    out = blend_windows(predict, latents, spans)[0, :, 0]
    torch.testing.assert_close(out[:5], torch.full((5,), 1.0))
    torch.testing.assert_close(out[5:16], torch.full((11,), 3.5))
    torch.testing.assert_close(out[16:], torch.full((5,), 6.0))


def _setup(frames: int, motion: bool = True):  # type: ignore[no-untyped-def]
    model = tiny_model(motion=motion)
    perturb_(model.guiders, scale=0.05)
    x = inputs(1, 1)
    reference = encode_reference(model, x["reference_latents"], x["clip_embeds"])
    c_multi = guide_frames(model, conditions(1, frames).frames, frames, chunk=5)
    return model, reference, c_multi


def test_guiding_in_chunks_equals_guiding_at_once() -> None:
    model, _, c_multi = _setup(12)
    with torch.no_grad():
        whole = model.guide(conditions(1, 12))
    torch.testing.assert_close(c_multi, whole)


@torch.no_grad()
def test_cfg_is_uncond_plus_scale_times_difference() -> None:
    model, reference, c_multi = _setup(3)
    latents = torch.randn(1, 3, 4, 8, 6)
    t = torch.tensor(700)
    cond = guided_prediction(model, latents, t, c_multi, reference, 1.0)
    # The unconditional branch: zero CLIP context, no reference tokens, guiders kept.
    uncond = model.denoise(latents, t[None], torch.zeros_like(reference.context), c_multi, None)
    guided = guided_prediction(model, latents, t, c_multi, reference, 1.5)
    torch.testing.assert_close(guided, uncond + 1.5 * (cond - uncond))
    assert not torch.allclose(cond, uncond, atol=1e-4)


@torch.no_grad()
def test_sampling_a_sequence_that_fits_one_window_is_plain_ddim() -> None:
    model, reference, c_multi = _setup(10)
    sampling = SamplingConfig(steps=3, guidance_scale=1.5, window=16, stride=8, seed=4)
    got = sample_latents(model, reference, c_multi, sampling, progress=False)
    # The same DDIM loop written out without windows.
    scheduler = build_ddim(model.cfg)
    scheduler.set_timesteps(3)
    latents = torch.randn(1, 10, 4, 8, 6, generator=torch.Generator().manual_seed(4))
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        prediction = guided_prediction(model, latents, t, c_multi, reference, 1.5)
        latents = scheduler.step(prediction, t, latents).prev_sample
    assert torch.equal(got, latents)


@torch.no_grad()
def test_long_sequences_are_sampled_in_windows_covering_every_frame() -> None:
    model, reference, c_multi = _setup(21)
    sampling = SamplingConfig(steps=2, guidance_scale=1.5, seed=1)
    calls: list[tuple[int, int]] = []
    original = model.denoise

    def spy(latents: torch.Tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(tuple(latents.shape[:2]))
        return original(latents, *args, **kwargs)

    model.denoise = spy  # type: ignore[method-assign]
    out = sample_latents(model, reference, c_multi, sampling, progress=False)
    assert out.shape == (1, 21, 4, 8, 6) and torch.isfinite(out).all()
    # 2 steps x 2 windows x (cond + uncond), every call on a full 16-frame window
    assert calls == [(1, 16)] * 8


@torch.no_grad()
def test_sampling_is_seeded() -> None:
    model, reference, c_multi = _setup(4, motion=False)
    a = sample_latents(model, reference, c_multi, SamplingConfig(steps=2, seed=0), progress=False)
    b = sample_latents(model, reference, c_multi, SamplingConfig(steps=2, seed=0), progress=False)
    c = sample_latents(model, reference, c_multi, SamplingConfig(steps=2, seed=1), progress=False)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_generate_is_the_whole_inference_sequence() -> None:
    model = tiny_model(motion=True)
    perturb_(model.guiders, scale=0.05)  # so that the conditions change the result
    cond = conditions(1, 5, seed=3)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    sampling = SamplingConfig(steps=2, window=4, stride=2, height=HEIGHT, width=WIDTH, seed=2)
    got = generate(model, image, cond, 5, sampling)
    assert got.shape == (5, HEIGHT, WIDTH, 3) and got.dtype == np.uint8
    # The steps written out: guiders per window-sized chunk, reference, DDIM, decoding.
    with torch.no_grad():
        c_multi = guide_frames(model, cond.frames, 5, chunk=4)
        reference = encode_reference(model, *reference_inputs(model, image))
        latents = sample_latents(model, reference, c_multi, sampling, progress=False)
    assert np.array_equal(got, decode_frames(model, latents))
    # A function of a frame range gives the same frames as the whole-clip conditions.
    ranges: list[tuple[int, int]] = []

    def chunks(start: int, stop: int) -> Conditions:
        ranges.append((start, stop))
        return cond.frames(start, stop)

    assert np.array_equal(generate(model, image, chunks, 5, sampling), got)
    assert ranges == [(0, 4), (4, 5)]  # sampling.window frames at a time
    # The conditions matter, and asking for more frames than they hold is an error.
    assert not np.array_equal(generate(model, image, conditions(1, 5, seed=4), 5, sampling), got)
    with pytest.raises(ValueError, match="6 frames asked, the conditions hold 5"):
        generate(model, image, cond, 6, sampling)
