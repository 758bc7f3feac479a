"""DeepSpeed checkpoints with the run's state, and the export to a model folder.

::

    output_dir/config.yaml                          resolved TrainConfig of the run
    output_dir/checkpoints/latest                   tag of the newest checkpoint (DeepSpeed)
    output_dir/checkpoints/step_00001000/           DeepSpeed: module, optimizer, LR schedule
        mp_rank_00_model_states.pt                    + client state: step, config, EMA
        zero_pp_rank_R_mp_rank_00_optim_states.pt     ZeRO optimizer partition of rank R
        rank_R.pt                                     rank R: loader positions, RNG states
    output_dir/export/                              model folder (python -m model.animate)

A checkpoint directory is complete once ``latest`` names it (DeepSpeed writes ``latest``
after the files); the per-rank files are written before that, each atomically
(:func:`shards.storage.atomic_path`). Per-rank state is a plain dict of tensors and numbers,
saved with ``torch.save`` and read with ``weights_only=True``.

:func:`export_model` writes the model folder: ``init_from``'s model with the trained
parameters replaced (the trainer picks which weights: EMA, ZeRO fp32 master weights from the
last checkpoint via :func:`zero_fp32_weights`, or the live ones), saved by
:func:`model.folder.save_model_folder` in ``checkpoint.export_dtype``.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

from model.folder import save_model_folder
from preprocess.devices import torch_dtype
from shards.storage import atomic_path
from train.config import TrainConfig
from train.provenance import Provenance
from train.stages import load_stage_model

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


def tag_of(step: int) -> str:
    return f"step_{step:08d}"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def latest_tag(output_dir: str | Path) -> str | None:
    """The tag in ``checkpoints/latest``, or None when there is no checkpoint."""
    path = checkpoint_dir(output_dir) / "latest"
    return path.read_text().strip() if path.is_file() else None


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Python, NumPy, torch (global and the noise generator) RNG states as tensors/numbers."""
    _, internal, gauss = random.getstate()
    # The legacy global NumPy RNG is saved because libraries may draw from it.
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": float("nan") if gauss is None else float(gauss),
        "numpy": torch.from_numpy(np.asarray(keys, np.int64)),
        "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "noise": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    gauss = state["python_gauss"]
    random.setstate((3, tuple(int(x) for x in state["python"]), None if gauss != gauss else gauss))
    has_gauss, cached = state["numpy_gauss"]
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        ("MT19937", keys, state["numpy_pos"], int(has_gauss), float(cached))
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["noise"])


def save_rank_state(path: Path, rank: int, state: dict[str, Any]) -> None:
    """Write this rank's state next to the DeepSpeed files (atomically)."""
    with atomic_path(path / f"rank_{rank}.pt") as tmp:
        torch.save(state, tmp)


def load_rank_state(path: Path, rank: int) -> dict[str, Any]:
    file = path / f"rank_{rank}.pt"
    if not file.is_file():
        raise FileNotFoundError(
            f"{file} not found: the checkpoint was written by fewer ranks; resume with the "
            "world size it was written with"
        )
    state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=True)
    return state


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoint directories (rank 0)."""
    folders = sorted(p for p in checkpoint_dir(output_dir).glob("step_*") if p.is_dir())
    for old in folders[: max(0, len(folders) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("deleted old checkpoint %s", old)


def zero_fp32_weights(output_dir: str | Path, step: int) -> dict[str, torch.Tensor]:
    """fp32 master weights of the trained parameters, gathered from the ZeRO partitions of the
    checkpoint of ``step`` (what a bf16/fp16 engine holds only in its optimizer state)."""
    state: dict[str, torch.Tensor] = get_fp32_state_dict_from_zero_checkpoint(
        str(checkpoint_dir(output_dir)), tag=tag_of(step)
    )
    return state


def export_model(
    cfg: TrainConfig,
    weights: Mapping[str, torch.Tensor],
    trained: list[str],
    data: Provenance,
) -> Path:
    """Write ``output_dir/export``: ``init_from``'s model (frozen parts exactly as loaded, the
    engine may hold them in bf16) with the stage's guiders, the ``trained`` parameters taken
    from ``weights``, and the training data's geometry and extractor record (``data``)."""
    base = load_stage_model(cfg.init_from, cfg.stage, data)
    target = dict(base.named_parameters())
    with torch.no_grad():
        for name in trained:
            target[name].copy_(weights[name].detach().to("cpu", torch.float32))
    dtype = torch_dtype(cfg.checkpoint.export_dtype, "cpu")
    return save_model_folder(base, Path(cfg.output_dir) / "export", dtype=dtype)
