"""The composed animation model: guiders + ReferenceNet + denoising UNet (+ motion modules).

One :meth:`AnimationModel.forward` serves training and inference::

    conditions ──► Guiders ──► c_multi (B, F, C0, h, w) ──┐ added after conv_in
    reference latent ──► ReferenceNet (t = 0) ──► attn1 inputs ──► reference attention
    CLIP image embedding ──► cross-attention context of both UNets
    noisy latents (B, F, 4, h, w) ──► denoising UNet ──► prediction (B, F, 4, h, w)

The pieces are exposed separately (:meth:`guide`, :meth:`encode_reference`, :meth:`denoise`)
because at inference ``c_multi`` and the reference tokens do not change over the 50 steps and
are computed once. Stage 1 folds frames into the batch of a 2D UNet; stage 2 runs diffusers'
``UNetMotionModel`` on whole clips (see :mod:`model.motion`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.models.unets.unet_motion_model import MotionAdapter, UNetMotionModel
from torch import nn
from transformers import CLIPVisionModelWithProjection

from model.components import build_image_encoder, build_unet, build_vae
from model.config import ModelConfig, check_config
from model.guiders import Conditions, Guiders
from model.motion import add_motion_modules, build_motion_adapter
from model.reference_attention import ReferenceBank, install_reference_attention

log = logging.getLogger(__name__)

ReferenceTokens = dict[str, torch.Tensor]  # attn1 layer name -> (B, L, C)


class AnimationModel(nn.Module):
    """Multi-character image animation model (docs/design.md §5)."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        unet: UNet2DConditionModel,
        guiders: Guiders,
        motion_adapter: MotionAdapter | None = None,
    ) -> None:
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.vae = vae
        self.image_encoder = image_encoder
        self.reference_unet = reference_unet
        self.guiders = guiders
        self.unet: UNet2DConditionModel | UNetMotionModel = unet
        self.bank = ReferenceBank()
        if motion_adapter is not None:
            self.unet = add_motion_modules(unet, motion_adapter)
        elif cfg.motion.enabled:
            raise ValueError("cfg.motion.enabled needs a motion adapter")
        self.attention_layers = install_reference_attention(reference_unet, self.unet, self.bank)

    @classmethod
    def from_config(cls, cfg: ModelConfig, *, empty: bool = False) -> AnimationModel:
        """Every part built from ``cfg``: random weights seeded by ``cfg.seed`` (zero-initialised
        guider outputs and motion-module outputs), or ``empty`` parameters on the meta device
        for loading with ``load_state_dict(..., assign=True)``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            with init_empty_weights() if empty else nullcontext():
                parts = {
                    "vae": build_vae(cfg),
                    "image_encoder": build_image_encoder(cfg),
                    "reference_unet": build_unet(cfg),
                    "unet": build_unet(cfg),
                    "guiders": Guiders(cfg.guiders, cfg.unet.block_out_channels[0]),
                }
                adapter = build_motion_adapter(cfg) if cfg.motion.enabled else None
        return cls(cfg, motion_adapter=adapter, **parts)  # type: ignore[arg-type]

    def add_motion_modules(self, adapter: MotionAdapter) -> None:
        """Stage 1 -> stage 2: the denoising UNet becomes a ``UNetMotionModel`` with ``adapter``."""
        unet = self.unet
        if not isinstance(unet, UNet2DConditionModel):
            raise ValueError("the model already has motion modules")
        self.unet = add_motion_modules(unet, adapter)
        self.cfg.motion.enabled = True
        self.attention_layers = install_reference_attention(
            self.reference_unet, self.unet, self.bank
        )

    # ---- encoders -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> latents (N, 4, H/8, W/8) (posterior mean, scaled)."""
        posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return posterior.mean * self.cfg.vae.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, 4, h, w) -> images (N, 3, 8h, 8w) in [-1, 1] (clamped)."""
        latents = latents.to(self.vae.dtype) / self.cfg.vae.scaling_factor
        return self.vae.decode(latents).sample.clamp(-1, 1)

    @torch.no_grad()
    def embed_reference(self, clip_pixels: torch.Tensor) -> torch.Tensor:
        """CLIP-preprocessed reference (B, 3, S, S) -> image embedding (B, D)."""
        out = self.image_encoder(pixel_values=clip_pixels.to(self.image_encoder.dtype))
        return out.image_embeds

    # ---- the three parts of a denoising step ----------------------------------------------
    def guide(self, conditions: Conditions) -> torch.Tensor:
        """``c_multi`` (B, F, C0, H/8, W/8) of the four conditions."""
        return self.guiders(conditions.to(self.device, self.dtype))

    def encode_reference(
        self, reference_latents: torch.Tensor, context: torch.Tensor
    ) -> ReferenceTokens:
        """Run the ReferenceNet at t = 0; returns its attn1 input tokens per layer.

        ``reference_latents`` (B, 4, h, w); ``context`` (B, D) or (B, L, D).
        """
        b = reference_latents.shape[0]
        t0 = torch.zeros(b, dtype=torch.long, device=reference_latents.device)  # (B,)
        self.bank.tokens = {}
        self.bank.keep = None
        self.reference_unet(reference_latents, t0, encoder_hidden_states=_as_context(context))
        tokens, self.bank.tokens = self.bank.tokens, {}
        if sorted(tokens) != self.attention_layers:
            raise RuntimeError("the ReferenceNet did not write every self-attention layer")
        return tokens

    def denoise(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        c_multi: torch.Tensor | None,
        reference: ReferenceTokens | None,
        reference_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One UNet evaluation: (B, F, 4, h, w) -> prediction (B, F, 4, h, w).

        ``timesteps`` (B,); ``context`` (B, D) or (B, L, D); ``c_multi`` (B, F, C0, h, w) or
        None (no guiders); ``reference`` from :meth:`encode_reference` or None (no reference
        attention); ``reference_keep`` (B,) bool masks the reference of some clips.
        """
        b, f = noisy_latents.shape[:2]
        context = _as_context(context).repeat_interleave(f, dim=0)  # (B*F, L, D)
        self.bank.tokens = dict(reference) if reference is not None else {}
        self.bank.keep = reference_keep
        residual = None if c_multi is None else c_multi.flatten(0, 1)  # (B*F, C0, h, w)
        with _added_after(self.unet.conv_in, residual):
            if isinstance(self.unet, UNetMotionModel):
                sample = noisy_latents.transpose(1, 2)  # (B, 4, F, h, w)
                out = self.unet(sample, timesteps, encoder_hidden_states=context).sample
                return out.transpose(1, 2)  # (B, F, 4, h, w)
            sample = noisy_latents.flatten(0, 1)  # (B*F, 4, h, w)
            t = timesteps.repeat_interleave(f)  # (B*F,)
            out = self.unet(sample, t, encoder_hidden_states=context).sample  # (B*F, 4, h, w)
            return out.unflatten(0, (b, f))

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        reference_latents: torch.Tensor,
        clip_embeds: torch.Tensor,
        conditions: Conditions,
        reference_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prediction (B, F, 4, h, w) for noisy latents (B, F, 4, h, w) at ``timesteps`` (B,).

        ``reference_latents`` (B, 4, h, w); ``clip_embeds`` (B, D); ``conditions`` at
        (H, W) = (8h, 8w). ``reference_keep`` (B,) bool: clips with False lose their reference
        (zero CLIP embedding, reference tokens masked) as in classifier-free-guidance training.
        """
        context = _as_context(clip_embeds)  # (B, L, D)
        if reference_keep is not None:
            context = context * reference_keep.to(context.dtype)[:, None, None]
        reference = self.encode_reference(reference_latents, context)
        c_multi = self.guide(conditions)
        return self.denoise(noisy_latents, timesteps, context, c_multi, reference, reference_keep)

    # ---- bookkeeping ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def unused_reference_parameters(self) -> list[str]:
        """ReferenceNet parameters that never reach a recorded attn1 input, so get no gradient:
        the last transformer block from its attn1 on, and the output layers. A trainer
        freezes them (or tolerates parameters without gradient)."""
        ref: Any = self.reference_unet
        i = len(ref.up_blocks) - 1
        j = len(ref.up_blocks[i].attentions) - 1
        last = f"up_blocks.{i}.attentions.{j}"
        k = len(ref.up_blocks[i].attentions[j].transformer_blocks) - 1
        tail = tuple(
            f"{last}.transformer_blocks.{k}.{p}."
            for p in ("attn1", "norm2", "attn2", "norm3", "ff")
        )
        dead = ("conv_norm_out.", "conv_out.", f"{last}.proj_out.", *tail)
        return [f"reference_unet.{n}" for n, _ in ref.named_parameters() if n.startswith(dead)]


def _as_context(embeds: torch.Tensor) -> torch.Tensor:
    """CLIP image embedding (B, D) -> cross-attention context (B, 1, D); (B, L, D) as is."""
    return embeds[:, None] if embeds.ndim == 2 else embeds


@contextmanager
def _added_after(module: nn.Module, residual: torch.Tensor | None) -> Iterator[None]:
    """Add ``residual`` to ``module``'s output for the duration of the block (a forward hook)."""
    if residual is None:
        yield
        return

    def add(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        if output.shape != residual.shape:
            raise ValueError(
                f"c_multi {tuple(residual.shape)} != conv_in output {tuple(output.shape)}"
            )
        return output + residual.to(output.dtype)

    handle = module.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
