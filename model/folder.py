"""Model folders: one folder per model, the resolved config plus one safetensors per part.

::

    DIR/config.yaml                   ModelConfig (resolved, see model/config.py)
    DIR/unet.safetensors              denoising UNet, diffusers UNet2DConditionModel names
    DIR/motion_modules.safetensors    stage 2 only: diffusers MotionAdapter names
    DIR/reference_unet.safetensors    ReferenceNet, UNet2DConditionModel names
    DIR/guiders.safetensors           the four guiders (pose., flow., order., reference_pose.)
    DIR/vae.safetensors               AutoencoderKL names
    DIR/image_encoder.safetensors     transformers CLIPVisionModelWithProjection names

``python -m model.init`` writes it, the trainer exports it, ``python -m model.animate
--checkpoint DIR`` reads it. Keys inside each file are the public libraries' own names, so a
part can also be loaded on its own (e.g. ``unet.safetensors`` into a plain SD-1.5 UNet).
Writing goes to a temporary sibling folder that is renamed into place, so a reader never sees
half a model.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from model.composed import AnimationModel
from model.config import ModelConfig
from model.motion import split_motion_state
from model.weights import load_strict
from shards.config import config_from_dict, dump_config

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
PARTS = ("unet", "motion_modules", "reference_unet", "guiders", "vae", "image_encoder")


def part_states(model: AnimationModel) -> dict[str, dict[str, torch.Tensor]]:
    """The model's weights split into the folder's parts (``motion_modules`` only in stage 2)."""
    spatial, motion = split_motion_state(model.unet.state_dict())
    parts = {
        "unet": spatial,
        "motion_modules": motion,
        "reference_unet": model.reference_unet.state_dict(),
        "guiders": model.guiders.guiders.state_dict(),
        "vae": model.vae.state_dict(),
        "image_encoder": model.image_encoder.state_dict(),
    }
    return {name: dict(state) for name, state in parts.items() if state}


def save_model_folder(
    model: AnimationModel, out: str | Path, dtype: torch.dtype | None = None
) -> Path:
    """Write ``model`` as a model folder at ``out`` (replacing one that is there)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dump_config(model.cfg, tmp / CONFIG_NAME)
    for name, state in part_states(model).items():
        tensors = {k: _plain(v, dtype) for k, v in state.items()}
        save_file(tensors, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("wrote model folder %s", out)
    return out


def _plain(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = tensor.detach()
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous().cpu()


def read_model_config(folder: str | Path) -> ModelConfig:
    """The resolved :class:`ModelConfig` of a model folder."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a model folder holds {CONFIG_NAME} and one .safetensors per "
            "part; make one with python -m model.init or export one from training"
        )
    data = yaml.safe_load(path.read_text()) or {}
    return config_from_dict(ModelConfig, data)


def load_model_folder(
    folder: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> AnimationModel:
    """Rebuild the model of a folder (strict: every weight present, nothing extra)."""
    folder = Path(folder)
    cfg = read_model_config(folder)
    expected = [p for p in PARTS if p != "motion_modules" or cfg.motion.enabled]
    missing = [f"{p}.safetensors" for p in expected if not (folder / f"{p}.safetensors").is_file()]
    if missing:
        raise FileNotFoundError(f"model folder {folder} lacks {missing}")
    model = AnimationModel.from_config(cfg, empty=True)
    state: dict[str, torch.Tensor] = {}
    for part in expected:
        prefix = {"motion_modules": "unet", "guiders": "guiders.guiders"}.get(part, part)
        loaded = load_file(str(folder / f"{part}.safetensors"), device=str(device))
        state.update({f"{prefix}.{k}": v for k, v in loaded.items()})
    load_strict(model, state, f"model folder {folder}")
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise RuntimeError(f"model folder {folder} left parameters uninitialised")
    model.to(device=device, dtype=dtype).eval()
    log.info(
        "loaded model folder %s (preset %s, motion %s)", folder, cfg.preset, cfg.motion.enabled
    )
    return model
