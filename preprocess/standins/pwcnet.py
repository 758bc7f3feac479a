"""MMFlow's PWC-Net checkpoint as a stand-in: the module tree MMFlow's source builds, for its
key names (:func:`mmflow_pwcnet`), and a random checkpoint of it (:func:`write_pwcnet_checkpoint`,
full size or :data:`TINY_PWCNET`), read by ``preprocess.flow.pwcnet.checkpoint`` like the public
``.pth``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from preprocess.flow.pwcnet.net import PWCNetConfig

if TYPE_CHECKING:
    from torch import nn

TINY_PWCNET = PWCNetConfig(
    pyramid_channels=(4, 4, 6, 6, 8, 8),
    convs_per_level=2,
    dense_channels=(6, 6, 4),
    context_channels=(6, 6, 6, 4, 4, 4),
    max_displacement=2,
)
"""A narrow PWC-Net (a few thousand parameters) that loads like the public checkpoint."""


def mmflow_pwcnet(cfg: PWCNetConfig | None = None) -> nn.Module:
    """PWC-Net's parameters under MMFlow's module names (no forward: only the ``state_dict``).

    Laid out as MMFlow's source builds it: ``encoder.layers[i]`` (``BasicConvBlock``) ->
    ``.layers[j]`` (mmcv ``ConvModule``) -> ``.conv``; ``decoder.decoders[levelN]``
    (``PWCModule``: ``dense_net.layers[k].layers.conv``, ``predict_layer``, ``upflow_layer``,
    ``upfeat_layer`` except on level 2) and ``decoder.post_processor.layers`` (``ContextNet``).
    Full size uses the numbers written in MMFlow's ``configs/_base_/models/pwcnet.py``
    (in_channels level6=81, level5=213, level4=181, level3=149, level2=117; ContextNet 565),
    not derived from :class:`PWCNetConfig`, so a mistake there shows against this tree."""
    from torch import nn

    cfg = cfg or PWCNetConfig()
    dense_channels = cfg.dense_channels

    def conv_module(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Module:
        m = nn.Module()  # mmcv ConvModule without norm (its activation has no parameters)
        m.conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation)
        return m

    def with_layers(*layers: nn.Module) -> nn.Module:
        m = nn.Module()
        m.layers = nn.Sequential(*layers)
        return m

    def pwc_module(cin: int, up_flow: bool) -> nn.Module:
        dense = []
        for f in dense_channels:
            layer = nn.Module()  # DenseLayer
            layer.layers = conv_module(cin, f)
            dense.append(layer)
            cin += f
        m = nn.Module()
        m.dense_net = with_layers(*dense)
        m.predict_layer = nn.Conv2d(cin, 2, 3, padding=1)
        if up_flow:
            m.upflow_layer = nn.ConvTranspose2d(2, 2, 4, 2, 1)
            m.upfeat_layer = nn.ConvTranspose2d(cin, 2, 4, 2, 1)
        return m

    if cfg == PWCNetConfig():
        in_channels = dict(level6=81, level5=213, level4=181, level3=149, level2=117)
        context_in = 565
    else:
        corr = (2 * cfg.max_displacement + 1) ** 2
        in_channels = {"level6": corr}
        for lv in (5, 4, 3, 2):
            in_channels[f"level{lv}"] = corr + cfg.pyramid_channels[lv - 1] + 4
        context_in = in_channels["level2"] + sum(cfg.dense_channels)

    n = cfg.convs_per_level
    ins = (3, *cfg.pyramid_channels[:-1])
    encoder = with_layers(
        *[
            with_layers(*[conv_module(i if j == 0 else o, o, 2 if j == 0 else 1) for j in range(n)])
            for i, o in zip(ins, cfg.pyramid_channels, strict=True)
        ]
    )
    levels = sorted(in_channels)  # MMFlow sorts: level2 .. level6; level2 is the end level
    decoder = nn.Module()
    decoder.decoders = nn.ModuleDict(
        {lv: pwc_module(in_channels[lv], lv != levels[0]) for lv in levels}
    )
    context: list[nn.Module] = []
    cin = context_in
    for f, d in zip(cfg.context_channels, cfg.context_dilations, strict=True):
        context.append(conv_module(cin, f, dilation=d))
        cin = f
    context.append(nn.Conv2d(cin, 2, 3, padding=1))
    decoder.post_processor = with_layers(*context)
    net = nn.Module()
    net.encoder = encoder
    net.decoder = decoder
    return net


def write_pwcnet_checkpoint(path: Path, cfg: PWCNetConfig | None = None, seed: int = 0) -> Path:
    """An MMFlow-style checkpoint (``meta`` + ``state_dict``) of a random PWC-Net (full size
    unless ``cfg``, e.g. :data:`TINY_PWCNET`)."""
    import torch

    torch.manual_seed(seed)
    state = mmflow_pwcnet(cfg).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"mmflow_version": "stand-in", "iter": 0}, "state_dict": state}, path)
    return path
