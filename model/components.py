"""Builders of the standard parts from a :class:`~model.config.ModelConfig`.

Every part is a stock diffusers or transformers class built from our typed config, so a model
folder (config + weights) can be rebuilt without hub access, and public weights load into
exactly the architecture the config names (strictly, see :mod:`model.weights`).
"""

from __future__ import annotations

from typing import Any

from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

from model.config import ImageEncoderConfig, ModelConfig, SchedulerConfig, UNetConfig, VaeConfig


def unet_kwargs(cfg: UNetConfig, latent_channels: int) -> dict[str, Any]:
    """``UNet2DConditionModel`` constructor arguments of an SD-1.5-style UNet."""
    return {
        "sample_size": cfg.sample_size,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "down_block_types": tuple(cfg.down_block_types),
        "up_block_types": tuple(cfg.up_block_types),
        "block_out_channels": tuple(cfg.block_out_channels),
        "layers_per_block": cfg.layers_per_block,
        "attention_head_dim": cfg.attention_head_dim,
        "cross_attention_dim": cfg.cross_attention_dim,
        "norm_num_groups": cfg.norm_num_groups,
    }


def build_unet(cfg: ModelConfig) -> UNet2DConditionModel:
    """A randomly initialised 2D UNet (denoising UNet before motion modules, or ReferenceNet)."""
    return UNet2DConditionModel(**unet_kwargs(cfg.unet, cfg.vae.latent_channels))


def vae_kwargs(cfg: VaeConfig) -> dict[str, Any]:
    """``AutoencoderKL`` constructor arguments of an SD-style VAE."""
    levels = len(cfg.block_out_channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": tuple(cfg.block_out_channels),
        "layers_per_block": cfg.layers_per_block,
        "latent_channels": cfg.latent_channels,
        "norm_num_groups": cfg.norm_num_groups,
        "sample_size": cfg.sample_size,
        "scaling_factor": cfg.scaling_factor,
    }


def build_vae(cfg: ModelConfig) -> AutoencoderKL:
    """A randomly initialised VAE."""
    return AutoencoderKL(**vae_kwargs(cfg.vae))


def clip_vision_config(cfg: ImageEncoderConfig) -> CLIPVisionConfig:
    """transformers config of the CLIP image encoder."""
    return CLIPVisionConfig(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.projection_dim,
    )


def build_image_encoder(cfg: ModelConfig) -> CLIPVisionModelWithProjection:
    """A randomly initialised CLIP vision encoder with projection."""
    return CLIPVisionModelWithProjection(clip_vision_config(cfg.image_encoder))


def build_image_processor(cfg: ModelConfig) -> CLIPImageProcessorPil:
    """CLIP preprocessing: shortest side to ``image_size``, centre crop, CLIP normalisation."""
    size = cfg.image_encoder.image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )


def _scheduler_kwargs(cfg: SchedulerConfig) -> dict[str, Any]:
    return {
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end,
        "beta_schedule": cfg.beta_schedule,
        "prediction_type": cfg.prediction_type,
        "rescale_betas_zero_snr": cfg.rescale_betas_zero_snr,
        "timestep_spacing": cfg.timestep_spacing,
        "steps_offset": cfg.steps_offset,
        "clip_sample": False,
    }


def build_ddim(cfg: ModelConfig) -> DDIMScheduler:
    """The sampling scheduler (DDIM) of ``cfg``'s noise schedule."""
    return DDIMScheduler(**_scheduler_kwargs(cfg.scheduler), set_alpha_to_one=False)


def build_ddpm(cfg: ModelConfig) -> DDPMScheduler:
    """The training scheduler (adds noise, gives v-targets) of the same schedule."""
    return DDPMScheduler(**_scheduler_kwargs(cfg.scheduler))
