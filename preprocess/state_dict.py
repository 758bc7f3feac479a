"""Reading PyTorch and safetensors state dicts safely, and loading them strictly: the one
strict loader of the project (extractor checkpoints, the public SD 1.5 / CLIP / AnimateDiff
files, the metrics' feature networks, model folders).

torch and safetensors are imported inside the functions, so importing this module is light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

M = TypeVar("M", bound="torch.nn.Module")


class WeightsError(ValueError):
    """Weights that do not fit the module they are loaded into exactly."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a PyTorch pickle, read safely.

    Pickles are read with ``torch.load(weights_only=True)`` (no code runs); a ``state_dict``
    wrapper (Lightning, MMFlow, 3D-ResNets) is unwrapped, non-tensor entries (training
    metadata) are dropped, and a ``module.`` prefix on every key (DataParallel) is removed."""
    import torch

    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path}: expected a dict of tensors, got {type(loaded).__name__}")
    state = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise WeightsError(f"{path}: no tensors in this checkpoint")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_strict(module: M, state: dict[str, torch.Tensor], what: str, *, assign: bool = False) -> M:
    """Load ``state`` into ``module`` by key name; any missing, unexpected or reshaped key is a
    :class:`WeightsError` naming them (``assign``: take the tensors as they are, for modules
    built on the meta device). Returns ``module``."""
    own = module.state_dict()
    reshaped = {
        k: f"{k}: {tuple(v.shape)} in the weights, {tuple(own[k].shape)} here"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    }
    fitting = {k: v for k, v in state.items() if k not in reshaped}
    try:
        result = module.load_state_dict(fitting, strict=False, assign=assign)
    except RuntimeError as exc:
        raise WeightsError(f"{what} does not match the configured architecture: {exc}") from None
    missing = [k for k in result.missing_keys if k not in reshaped]
    problems = [
        f"{len(keys)} {label} {list(keys)[:5]}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", result.unexpected_keys),
            ("keys of another shape", list(reshaped.values())),
        )
        if keys
    ]
    if problems:
        raise WeightsError(
            f"{what} does not match the configured architecture: {'; '.join(problems)}"
        )
    return module
