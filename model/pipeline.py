"""Sampling: DDIM, classifier-free guidance, 16-frame windows with averaged overlaps.

:func:`generate` is the one inference sequence — guider inputs -> ``c_multi``, reference image
-> latents + CLIP embedding -> ReferenceNet tokens, DDIM sampling, VAE decoding — that
``python -m model.animate``, training validation (``train.validation``) and evaluation
(``python -m train.evaluate``) all call; they differ only in where the reference image and the
guider inputs come from (files and extractors; stored clips). The rest of the module is its
steps, on tensors.

Classifier-free guidance. The unconditional branch drops the *reference*: the CLIP image
embedding is replaced by zeros and the denoising UNet gets no reference tokens (its spatial
self-attention sees only its own frame). The four guiders (pose, background flow, depth order,
reference pose) are kept in both branches, so guidance strengthens the appearance of the
reference, not the motion: ``eps = eps_uncond + s * (eps_cond - eps_uncond)``, s = 1.5 by
default. Training drops the same things (``AnimationModel.forward(..., reference_keep=...)``).

Windows. A clip longer than ``window`` frames is denoised in windows of ``window`` frames whose
starts are ``stride`` apart; the last window is aligned with the end, so every window has the
trained length and every frame is covered. At every step each window's prediction is computed
and the predictions of frames that several windows share are averaged, then one DDIM step
updates the whole sequence.

Numerics. The UNets may run in bfloat16 (``dtype=auto`` on CUDA), but the sampler's state does
not: the latents, the window accumulation (sum and count of the overlapping predictions), the
classifier-free-guidance combination and every DDIM update are float32, and each UNet call
gets a copy of its window cast to the model's dtype and returns float32. diffusers does the
update in float32 too (its Euler and DPM-Solver schedulers upcast the sample in ``step``, "to
avoid precision issues when computing prev_sample"); here the state also stays float32
between steps, since in bfloat16 (8 bits of mantissa) the small per-step change of a
50-step DDIM update ``x_{t-1} = a x_t + b eps`` is largely rounded away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from model.components import build_ddim, build_image_processor
from model.composed import AnimationModel, ReferenceTokens
from model.config import SamplingConfig
from model.guiders import Conditions

log = logging.getLogger(__name__)

Span = tuple[int, int]
Predictor = Callable[[torch.Tensor, Span], torch.Tensor]


def window_spans(num_frames: int, window: int = 16, stride: int = 8) -> list[Span]:
    """Frame ranges [start, stop) of the windows over ``num_frames`` frames.

    One window when the clip fits; otherwise starts 0, stride, 2*stride, ... while a window
    fits, plus a last window ending at the last frame.
    """
    if num_frames < 1 or window < 1 or not 1 <= stride <= window:
        raise ValueError(f"bad windowing: {num_frames} frames, window {window}, stride {stride}")
    if num_frames <= window:
        return [(0, num_frames)]
    spans = [(s, s + window) for s in range(0, num_frames - window + 1, stride)]
    if spans[-1][1] < num_frames:
        spans.append((num_frames - window, num_frames))
    return spans


def blend_windows(predict: Predictor, latents: torch.Tensor, spans: list[Span]) -> torch.Tensor:
    """Average of the windows' predictions per frame: latents (B, T, ...) -> (B, T, ...)
    float32 (sum and count accumulated in float32 whatever dtype ``predict`` returns)."""
    total = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
    count = torch.zeros(latents.shape[1], dtype=torch.float32, device=latents.device)  # (T,)
    for start, stop in spans:
        total[:, start:stop] += predict(latents[:, start:stop], (start, stop)).float()
        count[start:stop] += 1
    if bool((count == 0).any()):
        raise ValueError("the windows leave frames uncovered")
    return total / count.view(1, -1, *([1] * (latents.ndim - 2)))


@dataclass
class Reference:
    """What the reference image contributes to every step (computed once)."""

    context: torch.Tensor  # (B, 1, D) CLIP image embedding as cross-attention context
    tokens: ReferenceTokens  # attn1 layer name -> (B, L, C)


def encode_reference(
    model: AnimationModel, reference_latents: torch.Tensor, clip_embeds: torch.Tensor
) -> Reference:
    """Reference latents (B, 4, h, w) and CLIP embeddings (B, D) -> :class:`Reference`."""
    context = clip_embeds[:, None].to(model.dtype)  # (B, 1, D)
    with torch.no_grad():
        tokens = model.encode_reference(reference_latents.to(model.dtype), context)
    return Reference(context, tokens)


@torch.no_grad()
def guided_prediction(
    model: AnimationModel,
    latents: torch.Tensor,
    t: torch.Tensor,
    c_multi: torch.Tensor,
    reference: Reference,
    guidance_scale: float,
) -> torch.Tensor:
    """CFG prediction (float32) for latents (B, F, 4, h, w) at timestep ``t`` (scalar
    tensor); the UNet runs in the model's dtype, the combination in float32."""
    timesteps = t.expand(latents.shape[0]).to(latents.device)  # (B,)
    sample = latents.to(model.dtype)  # the UNet's input dtype; the sampler keeps float32
    cond = model.denoise(sample, timesteps, reference.context, c_multi, reference.tokens).float()
    if guidance_scale == 1.0:
        return cond
    empty = torch.zeros_like(reference.context)
    uncond = model.denoise(sample, timesteps, empty, c_multi, None).float()
    return uncond + guidance_scale * (cond - uncond)


@torch.no_grad()
def guide_frames(
    model: AnimationModel,
    conditions: Callable[[int, int], Conditions],
    num_frames: int,
    chunk: int = 16,
) -> torch.Tensor:
    """``c_multi`` (B, T, C0, h, w) of a whole sequence, ``chunk`` frames at a time.

    ``conditions(start, stop)`` gives the guider inputs of frames ``start:stop`` (e.g.
    ``Conditions.frames``, or a function that renders them on demand, so the pixel-size inputs
    of a long video never have to be in memory at once). The guiders are per frame, so
    chunking changes nothing.
    """
    parts = [
        model.guide(conditions(s, min(s + chunk, num_frames))) for s in range(0, num_frames, chunk)
    ]
    return torch.cat(parts, dim=1)


def _window_predictor(
    model: AnimationModel,
    t: torch.Tensor,
    c_multi: torch.Tensor,
    reference: Reference,
    guidance_scale: float,
) -> Predictor:
    def predict(window: torch.Tensor, span: Span) -> torch.Tensor:
        c_window = c_multi[:, span[0] : span[1]]  # (B, F, C0, h, w)
        return guided_prediction(model, window, t, c_window, reference, guidance_scale)

    return predict


@torch.no_grad()
def sample_latents(
    model: AnimationModel,
    reference: Reference,
    c_multi: torch.Tensor,
    sampling: SamplingConfig,
    progress: bool = True,
) -> torch.Tensor:
    """DDIM from seeded noise to float32 latents (B, T, 4, h, w), windowed, with CFG.

    ``c_multi`` (B, T, C0, h, w) from :func:`guide_frames`. The initial noise comes from a CPU
    generator seeded with ``sampling.seed``, so a seed gives the same video on any device. The
    latents and the scheduler's updates stay float32 whatever the model's dtype.
    """
    b, frames, _, h, w = c_multi.shape
    scheduler = build_ddim(model.cfg)
    scheduler.set_timesteps(sampling.steps, device=model.device)
    generator = torch.Generator().manual_seed(sampling.seed)
    shape = (b, frames, model.cfg.vae.latent_channels, h, w)
    latents = torch.randn(shape, generator=generator).to(model.device, torch.float32)
    latents = latents * scheduler.init_noise_sigma
    spans = window_spans(frames, sampling.window, sampling.stride)
    log.info(
        "sampling %d frames in %d window(s), %d DDIM steps", frames, len(spans), sampling.steps
    )
    for t in tqdm(scheduler.timesteps, desc="denoising", disable=not progress):
        predict = _window_predictor(model, t, c_multi, reference, sampling.guidance_scale)
        prediction = blend_windows(predict, latents, spans)  # (B, T, 4, h, w)
        step = scheduler.step(
            prediction, t, latents, eta=sampling.eta, generator=generator, return_dict=False
        )
        latents = step[0]  # x_{t-1}
    return latents


@torch.no_grad()
def decode_frames(model: AnimationModel, latents: torch.Tensor, chunk: int = 8) -> np.ndarray:
    """Latents (1, T, 4, h, w) -> frames (T, 8h, 8w, 3) uint8 RGB."""
    flat = latents[0]  # (T, 4, h, w)
    images = [model.decode_latents(flat[s : s + chunk]) for s in range(0, flat.shape[0], chunk)]
    video = torch.cat(images).float()  # (T, 3, H, W) in [-1, 1]
    video = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return video.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def reference_inputs(model: AnimationModel, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference image (H, W, 3) uint8 at the output size -> (latents (1, 4, H/8, W/8),
    CLIP image embedding (1, D))."""
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, H, W)
    latents = model.encode_images(pixels.to(model.device))
    processor = build_image_processor(model.cfg)
    clip_pixels = processor(images=image, return_tensors="pt")["pixel_values"]  # (1, 3, S, S)
    embeds = model.embed_reference(clip_pixels.to(model.device))
    return latents, embeds


@torch.no_grad()
def generate(
    model: AnimationModel,
    reference_image: np.ndarray,
    conditions: Callable[[int, int], Conditions] | Conditions,
    num_frames: int,
    sampling: SamplingConfig,
    *,
    progress: bool = False,
) -> np.ndarray:
    """Animate ``reference_image`` (H, W, 3) uint8, already on the ``sampling`` canvas, with
    the guider inputs of ``num_frames`` frames: frames (T, H, W, 3) uint8 RGB.

    ``conditions`` is either the :class:`Conditions` of the whole clip (B = 1, at least
    ``num_frames`` frames) or a function ``(start, stop) -> Conditions`` of a frame range, so
    the pixel-size inputs of a long video are made a chunk at a time (:func:`guide_frames`,
    ``sampling.window`` frames per chunk). Then the reference is encoded once
    (:func:`reference_inputs`, :func:`encode_reference`), :func:`sample_latents` runs DDIM with
    classifier-free guidance in overlapping windows, and :func:`decode_frames` decodes.
    """
    if isinstance(conditions, Conditions):
        available = conditions.shape[1]
        if num_frames > available:
            raise ValueError(f"{num_frames} frames asked, the conditions hold {available}")
    chunks = conditions.frames if isinstance(conditions, Conditions) else conditions
    c_multi = guide_frames(model, chunks, num_frames, sampling.window)  # (1, T, C0, h, w)
    latents, embeds = reference_inputs(model, reference_image)
    reference = encode_reference(model, latents, embeds)
    video = sample_latents(model, reference, c_multi, sampling, progress=progress)
    return decode_frames(model, video)  # (T, H, W, 3)
