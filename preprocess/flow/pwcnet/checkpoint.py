"""MMFlow's PWC-Net checkpoints -> :class:`~preprocess.flow.pwcnet.net.PWCNet`, by a key map.

MMFlow saves ``{"meta": ..., "state_dict": ...}`` with its module tree's names (mmcv
``ConvModule`` wraps each conv as ``.conv``; the context network is the decoder's
``post_processor``)::

    encoder.layers.{i}.layers.{j}.conv.{weight,bias}                  i 0..5, j 0..2
    decoder.decoders.level{l}.dense_net.layers.{m}.layers.conv.{w,b}  l 2..6, m 0..4
    decoder.decoders.level{l}.predict_layer.{w,b}                     l 2..6
    decoder.decoders.level{l}.upflow_layer.{w,b}                      l 3..6
    decoder.decoders.level{l}.upfeat_layer.{w,b}                      l 3..6
    decoder.post_processor.layers.{n}.conv.{w,b}                      n 0..5
    decoder.post_processor.layers.6.{w,b}                             (the last, plain conv)

126 tensors for MMFlow's ``pwcnet`` config. Loading is strict both ways: every checkpoint key
must be mapped and every parameter of ours filled, with equal shapes; otherwise the error lists
the difference. Checkpoints are read by :func:`preprocess.state_dict.read_state_dict`
(``torch.load(weights_only=True)``; the ``state_dict`` entry of MMFlow's files).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from preprocess.flow.pwcnet.net import LEVELS, PWCNet, PWCNetConfig
from preprocess.state_dict import load_strict, read_state_dict

PARAMS = ("weight", "bias")


def mmflow_key_map(cfg: PWCNetConfig) -> dict[str, str]:
    """Checkpoint key -> our parameter name, for every parameter of a PWC-Net of ``cfg``."""
    pairs: dict[str, str] = {}
    for i in range(len(cfg.pyramid_channels)):
        for j in range(cfg.convs_per_level):
            for p in PARAMS:  # our Sequential alternates conv, LeakyReLU
                pairs[f"encoder.layers.{i}.layers.{j}.conv.{p}"] = f"pyramid.{i}.{2 * j}.{p}"
    for lv in LEVELS:
        src, dst = f"decoder.decoders.level{lv}", f"estimators.level{lv}"
        for m in range(len(cfg.dense_channels)):
            for p in PARAMS:
                pairs[f"{src}.dense_net.layers.{m}.layers.conv.{p}"] = f"{dst}.dense.{m}.{p}"
        for p in PARAMS:
            pairs[f"{src}.predict_layer.{p}"] = f"{dst}.predict.{p}"
            if lv != LEVELS[-1]:
                pairs[f"{src}.upflow_layer.{p}"] = f"{dst}.up_flow.{p}"
                pairs[f"{src}.upfeat_layer.{p}"] = f"{dst}.up_feat.{p}"
    n_context = len(cfg.context_channels)
    for n in range(n_context):
        for p in PARAMS:
            pairs[f"decoder.post_processor.layers.{n}.conv.{p}"] = f"context.{n}.{p}"
    for p in PARAMS:
        pairs[f"decoder.post_processor.layers.{n_context}.{p}"] = f"context.{n_context}.{p}"
    return pairs


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.fullmatch(k))})


def config_from_state_dict(state: dict[str, torch.Tensor]) -> PWCNetConfig:
    """The widths of the network a checkpoint holds (MMFlow's defaults for the public files)."""
    try:
        n_levels = _count(state, r"encoder\.layers\.(\d+)\.layers\.0\.conv\.weight")
        convs = _count(state, r"encoder\.layers\.0\.layers\.(\d+)\.conv\.weight")
        pyramid = tuple(
            int(state[f"encoder.layers.{i}.layers.0.conv.weight"].shape[0]) for i in range(n_levels)
        )
        top = f"decoder.decoders.level{LEVELS[0]}.dense_net.layers"
        n_dense = _count(state, re.escape(top) + r"\.(\d+)\.layers\.conv\.weight")
        dense = tuple(int(state[f"{top}.{m}.layers.conv.weight"].shape[0]) for m in range(n_dense))
        corr_in = int(state[f"{top}.0.layers.conv.weight"].shape[1])
        n_ctx = _count(state, r"decoder\.post_processor\.layers\.(\d+)\.conv\.weight")
        ctx = tuple(
            int(state[f"decoder.post_processor.layers.{n}.conv.weight"].shape[0])
            for n in range(n_ctx)
        )
    except KeyError as err:
        raise ValueError(
            f"not an MMFlow PWC-Net checkpoint: key {err} is missing (see "
            "preprocess/flow/pwcnet/checkpoint.py for the expected names)"
        ) from None
    d = (round(corr_in**0.5) - 1) // 2
    default = PWCNetConfig()
    if (2 * d + 1) ** 2 != corr_in:
        raise ValueError(f"level-6 decoder takes {corr_in} channels, not a (2d+1)**2 cost volume")
    if len(pyramid) != 6 or n_ctx != len(default.context_dilations):
        raise ValueError(
            f"checkpoint has {len(pyramid)} pyramid levels and {n_ctx} context convs; "
            "MMFlow's PWC-Net has 6 and 6"
        )
    return PWCNetConfig(
        pyramid_channels=pyramid,
        convs_per_level=convs,
        dense_channels=dense,
        context_channels=ctx,
        max_displacement=d,
    )


def convert_state_dict(state: dict[str, torch.Tensor], net: PWCNet) -> dict[str, torch.Tensor]:
    """Rename an MMFlow state dict to ``net``'s names; strict in both directions."""
    mapping = mmflow_key_map(net.cfg)
    ours = net.state_dict()
    unmapped = sorted(set(state) - set(mapping))
    missing = sorted(set(mapping) - set(state))
    if unmapped or missing:
        raise ValueError(
            f"checkpoint does not match MMFlow's PWC-Net: {len(unmapped)} unexpected keys "
            f"{unmapped[:5]}, {len(missing)} missing keys {missing[:5]}"
        )
    renamed = {mapping[k]: v for k, v in state.items()}
    wrong = [
        f"{k}: {tuple(v.shape)} vs ours {tuple(ours[k].shape)}"
        for k, v in renamed.items()
        if v.shape != ours[k].shape
    ]
    if wrong or set(renamed) != set(ours):
        raise ValueError(f"shape or name mismatch after the key map: {wrong[:5]}")
    return renamed


def load_mmflow_pwcnet(path: str | Path) -> PWCNet:
    """A :class:`PWCNet` with an MMFlow checkpoint's weights (architecture read from it)."""
    state = read_state_dict(path)
    net = PWCNet(config_from_state_dict(state))
    return load_strict(net, convert_state_dict(state, net), f"PWC-Net checkpoint {path}").eval()
