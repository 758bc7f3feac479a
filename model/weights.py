"""Strict loading of the public checkpoints, each in its own published format.

================  ====================================================  ======================
part              public file(s)                                        accepted ``path``
================  ====================================================  ======================
UNet (both)       stable-diffusion-v1-5/stable-diffusion-v1-5 ``unet/``  pipeline root, its
                  (config.json + diffusion_pytorch_model[.fp16]          ``unet/`` folder, or
                  .safetensors|.bin), or the original single file        the single file
                  ``v1-5-pruned-emaonly.safetensors``
VAE               same repository, ``vae/`` (or the same single file)    root, ``vae/``, file
CLIP encoder      lambdalabs/sd-image-variations-diffusers               root or its
                  ``image_encoder/`` (config.json + weights)             ``image_encoder/``
Motion modules    guoyww/animatediff ``mm_sd_v15_v2.ckpt`` (original),   the file, or the
                  or guoyww/animatediff-motion-adapter-v1-5-2            adapter folder
                  (diffusers ``MotionAdapter`` folder)
================  ====================================================  ======================

Diffusers and transformers folders are read by their own libraries' ``from_pretrained``
(offline: ``local_files_only``), which handle safetensors/bin, fp16 variants and legacy key
names; single files go through diffusers' LDM converters with our config; the original
AnimateDiff file through :func:`model.motion.convert_original_motion_module`. Every load is
strict twice: the library must report no missing, unexpected or mismatched key, and the result
is loaded strictly (:func:`preprocess.state_dict.load_strict`: every key, every shape) into the
module our :class:`~model.config.ModelConfig` builds, so the public weights must have exactly
the preset's architecture. Single files are read by :func:`preprocess.state_dict.read_state_dict`
(safetensors, or PyTorch pickles with ``torch.load(..., weights_only=True)`` only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import init_empty_weights
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.models.unets.unet_motion_model import MotionAdapter
from torch import nn
from transformers import CLIPVisionModelWithProjection

from model.components import build_image_encoder, build_unet, build_vae
from model.config import ModelConfig
from model.motion import (
    build_motion_adapter,
    convert_original_motion_module,
    original_checkpoint_state,
)
from preprocess.state_dict import WeightsError, load_strict, read_state_dict

__all__ = [
    "WeightsError",
    "load_image_encoder",
    "load_motion_adapter",
    "load_unet",
    "load_vae",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)


WHERE = {
    "unet": "the unet/ folder of stable-diffusion-v1-5/stable-diffusion-v1-5 (or its single "
    "file v1-5-pruned-emaonly.safetensors); pass it with --unet (config key weights.unet)",
    "vae": "the vae/ folder of stable-diffusion-v1-5/stable-diffusion-v1-5 (or the single "
    "file); pass it with --vae (config key weights.vae)",
    "image_encoder": "the image_encoder/ folder of lambdalabs/sd-image-variations-diffusers; "
    "pass it with --image-encoder (config key weights.image_encoder)",
    "motion_module": "mm_sd_v15_v2.ckpt from guoyww/animatediff, or the folder of "
    "guoyww/animatediff-motion-adapter-v1-5-2; pass it with --motion-module "
    "(config key weights.motion_module)",
}


def _empty(build: Callable[[], M]) -> M:
    with init_empty_weights():
        return build()


def _subfolder(path: Path, name: str) -> Path:
    """``path/name`` when ``path`` is a pipeline root that has it, else ``path``."""
    return path / name if (path / name / "config.json").is_file() else path


def _require(path: Path, part: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{part} weights not found at {path}: expected {WHERE[part]}")


def _variant(folder: Path, stem: str) -> str | None:
    """``"fp16"`` when only the fp16 variant of the weights is in ``folder``."""
    has_plain = any((folder / f"{stem}{s}").is_file() for s in (".safetensors", ".bin"))
    has_fp16 = any((folder / f"{stem}.fp16{s}").is_file() for s in (".safetensors", ".bin"))
    return "fp16" if has_fp16 and not has_plain else None


def _check_info(info: dict[str, Any], what: str) -> None:
    bad = {k: sorted(info.get(k) or [])[:5] for k in ("missing_keys", "unexpected_keys")}
    bad["mismatched_keys"] = [str(x) for x in list(info.get("mismatched_keys") or [])[:5]]
    bad["error_msgs"] = list(info.get("error_msgs") or [])[:3]
    if any(bad.values()):
        raise WeightsError(f"{what}: not an exact match: { {k: v for k, v in bad.items() if v} }")


def _from_folder(cls: Any, folder: Path, part: str, stem: str) -> dict[str, torch.Tensor]:
    """State dict of a diffusers/transformers model folder, read by its own library."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{part} weights not found: {folder} has no config.json; expected {WHERE[part]}"
        )
    try:
        model, info = cls.from_pretrained(
            str(folder),
            local_files_only=True,
            output_loading_info=True,
            **({"variant": v} if (v := _variant(folder, stem)) else {}),
        )
    except OSError as exc:
        raise FileNotFoundError(
            f"{part} weights in {folder}: {exc}; expected {WHERE[part]}"
        ) from None
    _check_info(info, f"{part} at {folder}")
    return dict(model.state_dict())


def load_unet(path: str | Path, cfg: ModelConfig) -> UNet2DConditionModel:
    """The SD 1.5 UNet of ``path`` in ``cfg``'s architecture (see the module table)."""
    path = Path(path)
    _require(path, "unet")
    target = _empty(lambda: build_unet(cfg))
    if path.is_file():
        state = convert_ldm_unet_checkpoint(read_state_dict(path), dict(target.config))
    else:
        folder = _subfolder(path, "unet")
        state = _from_folder(UNet2DConditionModel, folder, "unet", "diffusion_pytorch_model")
    log.info("UNet weights from %s (%d tensors)", path, len(state))
    return load_strict(target, state, f"UNet weights {path}", assign=True)


def load_vae(path: str | Path, cfg: ModelConfig) -> AutoencoderKL:
    """The SD VAE of ``path`` in ``cfg``'s architecture."""
    path = Path(path)
    _require(path, "vae")
    target = _empty(lambda: build_vae(cfg))
    if path.is_file():
        state = convert_ldm_vae_checkpoint(read_state_dict(path), dict(target.config))
    else:
        folder = _subfolder(path, "vae")
        state = _from_folder(AutoencoderKL, folder, "vae", "diffusion_pytorch_model")
    log.info("VAE weights from %s (%d tensors)", path, len(state))
    return load_strict(target, state, f"VAE weights {path}", assign=True)


def load_image_encoder(path: str | Path, cfg: ModelConfig) -> CLIPVisionModelWithProjection:
    """The CLIP image encoder of ``path`` (a transformers folder) in ``cfg``'s architecture."""
    path = Path(path)
    _require(path, "image_encoder")
    folder = _subfolder(path, "image_encoder")
    state = _from_folder(CLIPVisionModelWithProjection, folder, "image_encoder", "model")
    log.info("CLIP image encoder weights from %s (%d tensors)", folder, len(state))
    target = _empty(lambda: build_image_encoder(cfg))
    return load_strict(target, state, f"image encoder weights {folder}", assign=True)


def load_motion_adapter(path: str | Path, cfg: ModelConfig) -> MotionAdapter:
    """AnimateDiff motion modules: the original checkpoint file or a diffusers adapter folder."""
    path = Path(path)
    _require(path, "motion_module")
    if path.is_file():
        state = convert_original_motion_module(original_checkpoint_state(read_state_dict(path)))
    else:
        state = _from_folder(MotionAdapter, path, "motion_module", "diffusion_pytorch_model")
    log.info("motion-module weights from %s (%d tensors)", path, len(state))
    target = _empty(lambda: build_motion_adapter(cfg, zero_init=False))
    return load_strict(target, state, f"motion-module weights {path}", assign=True)
