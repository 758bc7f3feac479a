"""Strict loading of the public checkpoints' own formats (model/weights.py).

The full-size checks use the public repositories' config.json files (written out below) so the
key names and shapes are those of the published weights; one test writes a real-sized SD 1.5
UNet (860M parameters, 3.4 GB of fp32 safetensors) and loads it for real.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import init_empty_weights
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.models.unets.unet_motion_model import MotionAdapter
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from model.components import build_image_encoder, build_unet, build_vae
from model.config import preset_config
from model.motion import build_motion_adapter
from model.weights import WeightsError, load_image_encoder, load_unet, load_vae

# stable-diffusion-v1-5/stable-diffusion-v1-5: unet/config.json and vae/config.json
SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# lambdalabs/sd-image-variations-diffusers: image_encoder/config.json (ViT-L/14)
IMAGE_VARIATIONS_ENCODER = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
# guoyww/animatediff-motion-adapter-v1-5-2: config.json
ANIMATEDIFF_V2_ADAPTER = {
    "block_out_channels": [320, 640, 1280, 1280],
    "motion_layers_per_block": 2,
    "motion_max_seq_length": 32,
    "motion_mid_block_layers_per_block": 1,
    "motion_norm_num_groups": 32,
    "motion_num_attention_heads": 8,
    "use_motion_mid_block": True,
}


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_sd15_preset_has_the_public_architectures() -> None:
    """Key names and shapes of the public configs equal what the sd15 preset builds (meta)."""
    cfg = preset_config("sd15")
    with init_empty_weights():
        pairs: list[tuple[Any, Any]] = [
            (UNet2DConditionModel.from_config(SD15_UNET), build_unet(cfg)),
            (AutoencoderKL.from_config(SD15_VAE), build_vae(cfg)),
            (
                CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_VARIATIONS_ENCODER)),
                build_image_encoder(cfg),
            ),
            (MotionAdapter.from_config(ANIMATEDIFF_V2_ADAPTER), build_motion_adapter(cfg)),
        ]
    for public, ours in pairs:
        assert shapes(public) == shapes(ours), type(public).__name__


def test_full_size_sd15_unet_folder_loads_strictly(tmp_path: Path) -> None:
    """Real tensors: every key of a real-sized unet/ folder lands in its place."""
    with init_empty_weights():
        public = UNet2DConditionModel.from_config(SD15_UNET)
    keys = shapes(public)
    del public
    unet_dir = tmp_path / "stable-diffusion-v1-5" / "unet"
    unet_dir.mkdir(parents=True)
    (unet_dir / "config.json").write_text(json.dumps(SD15_UNET))
    # Each tensor is filled with its key's index, so a misplaced tensor is visible.
    state = {k: torch.full(shape, float(i)) for i, (k, shape) in enumerate(keys.items())}
    assert sum(t.numel() for t in state.values()) > 850_000_000
    save_file(state, str(unet_dir / "diffusion_pytorch_model.safetensors"))
    del state
    gc.collect()
    unet = load_unet(tmp_path / "stable-diffusion-v1-5", preset_config("sd15"))
    loaded = unet.state_dict()
    assert list(loaded) == list(keys)
    for i, (key, tensor) in enumerate(loaded.items()):
        assert tensor.shape == keys[key] and not tensor.is_meta, key
        assert bool((tensor == i).all()), key
    del unet, loaded
    gc.collect()


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A tiny pipeline-root folder in the public layout (unet/, vae/, image_encoder/)."""
    cfg = preset_config("tiny")
    torch.manual_seed(5)
    build_unet(cfg).save_pretrained(tmp_path / "root" / "unet")
    build_vae(cfg).save_pretrained(tmp_path / "root" / "vae")
    build_image_encoder(cfg).save_pretrained(tmp_path / "root" / "image_encoder")
    return tmp_path / "root"


def _equal(a: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    mine = a.state_dict()
    return mine.keys() == state.keys() and all(torch.equal(mine[k], state[k]) for k in state)


def test_tiny_public_layout_loads_from_root_or_subfolder(tiny_root: Path) -> None:
    cfg = preset_config("tiny")
    unet_file = load_file(str(tiny_root / "unet" / "diffusion_pytorch_model.safetensors"))
    vae_file = load_file(str(tiny_root / "vae" / "diffusion_pytorch_model.safetensors"))
    clip_file = load_file(str(tiny_root / "image_encoder" / "model.safetensors"))
    assert _equal(load_unet(tiny_root, cfg), unet_file)
    assert _equal(load_unet(tiny_root / "unet", cfg), unet_file)
    assert _equal(load_vae(tiny_root, cfg), vae_file)
    assert _equal(load_image_encoder(tiny_root, cfg), clip_file)
    assert _equal(load_image_encoder(tiny_root / "image_encoder", cfg), clip_file)


def test_legacy_vae_attention_names_and_fp16_variant(tiny_root: Path) -> None:
    cfg = preset_config("tiny")
    vae_dir = tiny_root / "vae"
    state = load_file(str(vae_dir / "diffusion_pytorch_model.safetensors"))
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for key, value in state.items():
        for new, old in legacy.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
        renamed[key] = value.half()
    assert renamed.keys() != state.keys()
    (vae_dir / "diffusion_pytorch_model.safetensors").unlink()
    save_file(renamed, str(vae_dir / "diffusion_pytorch_model.fp16.safetensors"))
    vae = load_vae(tiny_root, cfg)
    assert all(torch.equal(vae.state_dict()[k].float(), v.half().float()) for k, v in state.items())


def test_missing_weights_name_the_files_and_the_flag(tmp_path: Path) -> None:
    cfg = preset_config("tiny")
    with pytest.raises(FileNotFoundError, match=r"stable-diffusion-v1-5.*--unet"):
        load_unet(tmp_path / "nowhere", cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_vae(tmp_path / "empty", cfg)
    with pytest.raises(FileNotFoundError, match=r"sd-image-variations.*--image-encoder"):
        load_image_encoder(tmp_path / "nowhere", cfg)


def test_weights_of_another_shape_or_with_extra_keys_are_rejected(tiny_root: Path) -> None:
    other = preset_config("tiny")
    other.unet.block_out_channels = [32, 32]
    with pytest.raises(WeightsError, match="does not match"):
        load_unet(tiny_root, other)
    path = tiny_root / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(path))
    with pytest.raises(WeightsError, match="not an exact match"):
        load_unet(tiny_root, preset_config("tiny"))
