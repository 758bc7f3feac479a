"""AnimateDiff motion modules (stage 2) through diffusers' ``MotionAdapter``/``UNetMotionModel``.

- :func:`build_motion_adapter` makes an adapter that fits the config's UNet.
- :func:`add_motion_modules` turns a 2D UNet plus an adapter into a ``UNetMotionModel`` that
  shares their tensors. The motion UNet's state-dict names are the 2D UNet's names plus the
  adapter's names (``down_blocks.i.motion_modules.j...``, ``mid_block.motion_modules.0...``,
  ``up_blocks.i.motion_modules.j...``); the merge is loaded with ``strict=True``, so that claim
  is checked every time.
- :func:`convert_original_motion_module` maps the key names of AnimateDiff's original
  checkpoints (``mm_sd_v15_v2.ckpt``) to the adapter's. Every original key is accounted for:
  renamed, or (the second copy of each block's frame-position table) checked equal to the copy
  that is kept. Anything else is an error, not a silent skip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from accelerate import init_empty_weights
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.models.unets.unet_motion_model import MotionAdapter, UNetMotionModel

from model.config import ModelConfig

MOTION_KEY = ".motion_modules."


def build_motion_adapter(cfg: ModelConfig, *, zero_init: bool = True) -> MotionAdapter:
    """A randomly initialised adapter for ``cfg``'s UNet.

    ``zero_init`` zeroes each motion module's output projection, as AnimateDiff initialises
    new modules, so a fresh adapter leaves the per-frame UNet unchanged.
    """
    u, m = cfg.unet, cfg.motion
    adapter = MotionAdapter(
        block_out_channels=tuple(u.block_out_channels),
        motion_layers_per_block=u.layers_per_block,
        motion_transformer_layers_per_block=m.transformer_layers_per_block,
        motion_mid_block_layers_per_block=1,
        motion_transformer_layers_per_mid_block=m.transformer_layers_per_block,
        motion_num_attention_heads=m.num_attention_heads,
        motion_norm_num_groups=u.norm_num_groups,
        motion_max_seq_length=m.max_seq_length,
        use_motion_mid_block=m.use_mid_block,
    )
    if zero_init:
        with torch.no_grad():
            for name, param in adapter.named_parameters():
                if name.rsplit(".", 2)[-2] == "proj_out":
                    param.zero_()
    return adapter


def add_motion_modules(unet: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """A ``UNetMotionModel`` made of ``unet``'s and ``adapter``'s tensors (no copies)."""
    with init_empty_weights():
        motion_unet = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    state = dict(unet.state_dict())
    overlap = state.keys() & adapter.state_dict().keys()
    if overlap:
        raise ValueError(f"UNet and motion adapter share key names: {sorted(overlap)[:3]}")
    state.update(adapter.state_dict())
    motion_unet.load_state_dict(state, strict=True, assign=True)
    return motion_unet


def split_motion_state(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(2D UNet part, motion-adapter part) of a ``UNetMotionModel`` state dict."""
    spatial = {k: v for k, v in state.items() if MOTION_KEY not in f".{k}"}
    motion = {k: v for k, v in state.items() if MOTION_KEY in f".{k}"}
    return spatial, motion


# Original AnimateDiff names -> diffusers MotionAdapter names, applied to each key in order.
# Original: <block>.motion_modules.<j>.temporal_transformer.{norm,proj_in,proj_out,
#   transformer_blocks.<k>.{attention_blocks.<a>.{to_q,to_k,to_v,to_out.0,pos_encoder.pe},
#   norms.<a>, ff.net.*, ff_norm}}
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.temporal_transformer\.", "."),
    (r"\.attention_blocks\.0\.pos_encoder\.pe$", ".pos_embed.pe"),
    (r"\.attention_blocks\.0\.", ".attn1."),
    (r"\.attention_blocks\.1\.", ".attn2."),
    (r"\.norms\.0\.", ".norm1."),
    (r"\.norms\.1\.", ".norm2."),
    (r"\.ff_norm\.", ".norm3."),
)
_SECOND_PE = re.compile(r"\.attention_blocks\.1\.pos_encoder\.pe$")


def _rename(key: str) -> str:
    for pattern, new in _RENAMES:
        key = re.sub(pattern, new, key)
    return key


def convert_original_motion_module(
    original: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """AnimateDiff original state dict (e.g. ``mm_sd_v15_v2.ckpt``) -> ``MotionAdapter`` keys.

    Both temporal attentions of an original block carry the same sinusoidal table
    (``attention_blocks.{0,1}.pos_encoder.pe``); diffusers keeps one per block
    (``pos_embed.pe``). The first is mapped, the second must equal it.
    """
    converted: dict[str, torch.Tensor] = {}
    duplicates: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        if MOTION_KEY not in f".{key}":
            raise KeyError(f"not a motion-module key: {key!r}")
        if _SECOND_PE.search(key):
            first = _SECOND_PE.sub(".attention_blocks.0.pos_encoder.pe", key)
            duplicates[_rename(first)] = value
            continue
        new = _rename(key)
        if new in converted:
            raise KeyError(f"two original keys map to {new!r}")
        converted[new] = value
    for key, value in duplicates.items():
        if key not in converted or not torch.equal(converted[key], value):
            raise ValueError(f"second position table of {key!r} differs from the first")
    return converted


def original_checkpoint_state(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The tensors of a loaded AnimateDiff checkpoint (``state_dict`` wrapper, ``module.``)."""
    inner = checkpoint.get("state_dict", checkpoint)
    if not isinstance(inner, dict):
        raise ValueError("motion-module checkpoint holds no state dict")
    state = {}
    for key, value in inner.items():
        if not isinstance(value, torch.Tensor):
            continue  # training metadata such as global_step
        state[key.removeprefix("module.")] = value
    return state
