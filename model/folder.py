"""Model folders: one folder per model, the resolved config plus one safetensors per part.

::

    DIR/config.yaml                   format_version + ModelConfig (resolved, model/config.py),
                                      with the training data's extractors (``preprocessing``)
    DIR/unet.safetensors              denoising UNet, diffusers UNet2DConditionModel names
    DIR/motion_modules.safetensors    stage 2 only: diffusers MotionAdapter names
    DIR/reference_unet.safetensors    ReferenceNet, UNet2DConditionModel names
    DIR/guiders.safetensors           the model's guiders (``guiders.names``: pose., flow.,
                                      order., reference_pose.)
    DIR/vae.safetensors               AutoencoderKL names
    DIR/image_encoder.safetensors     transformers CLIPVisionModelWithProjection names

``python -m model.init`` writes it, the trainer exports it, ``python -m model.animate
--checkpoint DIR`` reads it. Keys inside each file are the public libraries' own names, so a
part can also be loaded on its own (e.g. ``unet.safetensors`` into a plain SD-1.5 UNet).
Writing goes to a hidden temporary sibling folder that is renamed into place
(:func:`shards.storage.atomic_path`), so a reader never sees half a model.

The layout above is version :data:`MODEL_FORMAT_VERSION` of the model-folder format, written
as ``format_version`` at the top of ``config.yaml`` and checked by :func:`read_model_config`:
a folder without it, or of an older or newer version, is refused with a message saying what
to do (re-create it with this code, or upgrade mcanim), never misread. A change of the layout
or of :class:`~model.config.ModelConfig` that old folders cannot be read with bumps it.
Version 2 added ``preprocessing`` (which extractors made the training data, so that inference
uses them) and ``guiders.names``; a version-1 folder is read only when the caller accepts a
folder without that record (``accept_unrecorded``), since inference would otherwise fall back
to extractors the model may never have seen.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from model.composed import AnimationModel
from model.config import ModelConfig
from model.motion import split_motion_state
from preprocess.state_dict import load_strict
from shards.config import config_from_dict, config_to_dict
from shards.storage import atomic_path

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
PARTS = ("unet", "motion_modules", "reference_unet", "guiders", "vae", "image_encoder")
MODEL_FORMAT_VERSION = 2
"""Version of the model-folder format (the layout above and :class:`ModelConfig`)."""
UNRECORDED_VERSION = 1
"""The last version without ``preprocessing`` (readable with ``accept_unrecorded``)."""
FORMAT_VERSION_KEY = "format_version"
REDO = (
    "re-create the folder with this code: python -m model.init for an initial model, or "
    "re-export a trained one (run its training again with --resume: a finished run only "
    "writes output_dir/export again)"
)
ACCEPT = (
    "or use it as it is with accept_unrecorded=true (python -m model.animate / "
    "python -m train.evaluate --accept-unrecorded): the pose and depth extractors are then "
    "the ones configured for the run (default MoveNet and the feet heuristic), which may not "
    "be those the model was trained with"
)


class ModelFormatError(ValueError):
    """A model folder written in another version of the format than this code reads."""


def check_model_format(
    data: dict[str, Any], what: str, *, accept_unrecorded: bool = False
) -> dict[str, Any]:
    """``data`` (a folder's ``config.yaml``) without ``format_version`` once that is
    :data:`MODEL_FORMAT_VERSION` (or :data:`UNRECORDED_VERSION` with ``accept_unrecorded``);
    else :class:`ModelFormatError` naming ``what``, the version read, the version this code
    reads and what to do."""
    version = data.get(FORMAT_VERSION_KEY)
    reads = f"this code reads model folder format version {MODEL_FORMAT_VERSION}"
    rest = {k: v for k, v in data.items() if k != FORMAT_VERSION_KEY}
    if version is None:
        raise ModelFormatError(
            f"{what}: no {FORMAT_VERSION_KEY} (written before model folders were versioned); "
            f"{reads}: {REDO}"
        )
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{what}: {FORMAT_VERSION_KEY} {version!r} is not a number; {reads}")
    if version == UNRECORDED_VERSION and accept_unrecorded:
        log.warning(
            "%s: format version %d does not record which extractors made its training data; "
            "accepted (accept_unrecorded): the run's configured extractors are used",
            what,
            version,
        )
        return rest
    if version == UNRECORDED_VERSION:
        raise ModelFormatError(
            f"{what}: model folder format version {version} does not record which pose and "
            "depth extractors made its training data (version 2 does, and inference defaults "
            f"to them); {reads}: {REDO}; {ACCEPT}"
        )
    if version < MODEL_FORMAT_VERSION:
        raise ModelFormatError(
            f"{what}: model folder format version {version} is older than this code reads; "
            f"{reads}: {REDO}"
        )
    if version > MODEL_FORMAT_VERSION:
        raise ModelFormatError(
            f"{what}: model folder format version {version} is newer than this code reads; "
            f"{reads}: upgrade mcanim to read it"
        )
    return rest


def model_config_yaml(cfg: ModelConfig) -> str:
    """The ``config.yaml`` of a folder: ``format_version`` first, then the resolved config."""
    data = {FORMAT_VERSION_KEY: MODEL_FORMAT_VERSION, **config_to_dict(cfg)}
    return yaml.safe_dump(data, sort_keys=False)


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
    """Write ``model`` as a model folder at ``out`` (replacing one that is there), in
    ``dtype`` (floating tensors; None keeps theirs)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / CONFIG_NAME).write_text(model_config_yaml(model.cfg), encoding="utf-8")
        for name, state in part_states(model).items():
            tensors = {k: _plain(v, dtype) for k, v in state.items()}
            save_file(tensors, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
        if out.exists():  # a folder is renamed over no non-empty folder: the old one goes last
            shutil.rmtree(out)
    log.info("wrote model folder %s", out)
    return out


def _plain(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = tensor.detach()
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous().cpu()


def read_model_config(folder: str | Path, *, accept_unrecorded: bool = False) -> ModelConfig:
    """The resolved :class:`ModelConfig` of a model folder, once its format version is the
    one this code reads (:class:`ModelFormatError` otherwise; ``accept_unrecorded`` also
    reads version-1 folders, whose ``preprocessing`` record is then empty)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a model folder holds {CONFIG_NAME} and one .safetensors per "
            "part; make one with python -m model.init or export one from training"
        )
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a mapping, got {type(data).__name__}")
    checked = check_model_format(
        data, f"model folder {folder}", accept_unrecorded=accept_unrecorded
    )
    return config_from_dict(ModelConfig, checked)


def load_model_folder(
    folder: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    *,
    accept_unrecorded: bool = False,
) -> AnimationModel:
    """Rebuild the model of a folder (strict: every weight present, nothing extra);
    ``accept_unrecorded`` as in :func:`read_model_config`."""
    folder = Path(folder)
    cfg = read_model_config(folder, accept_unrecorded=accept_unrecorded)
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
    load_strict(model, state, f"model folder {folder}", assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise RuntimeError(f"model folder {folder} left parameters uninitialised")
    model.to(device=device, dtype=dtype).eval()
    log.info(
        "loaded model folder %s (preset %s, motion %s, guiders %s)",
        folder,
        cfg.preset,
        cfg.motion.enabled,
        ", ".join(cfg.guiders.names),
    )
    return model
