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
after the files); the per-rank files are written before that. Per-rank state is a plain
dict of tensors and numbers, saved with ``torch.save`` and read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    """Write this rank's state next to the DeepSpeed files (temporary name, then rename)."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".rank_{rank}.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(path / f"rank_{rank}.pt")


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
