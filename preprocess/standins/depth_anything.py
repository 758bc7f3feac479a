"""Depth Anything as a stand-in: a random ``DepthAnythingForDepthEstimation`` folder (config,
safetensors, image-processor config) that ``from_pretrained`` reads like the hub's
(:func:`write_depth_anything`), tiny for tests or at V1 Small's sizes for timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class DepthAnythingSize:
    """Widths of a Depth Anything model: Dinov2 backbone (patch 14, 518 px, MLP ratio 4),
    DPT neck and head."""

    hidden: int
    layers: int
    heads: int
    reassemble: int
    neck: tuple[int, int, int, int]
    fusion: int
    head: int


DEPTH_ANYTHING_SIZES = {
    "tiny": DepthAnythingSize(16, 4, 2, 16, (8, 8, 16, 16), 8, 8),
    # Depth Anything V1 Small: Dinov2-S/14 backbone, the hub config's sizes
    "small": DepthAnythingSize(384, 12, 6, 384, (48, 96, 192, 384), 64, 32),
}


def write_depth_anything(
    folder: Path, seed: int = 0, size: Literal["tiny", "small"] = "tiny", input_side: int = 518
) -> Path:
    """A random Depth Anything model folder (config, safetensors, processor config) of
    :data:`DEPTH_ANYTHING_SIZES` ``[size]``, read by ``from_pretrained`` like the hub's. Its
    weights are rescaled so the depth spreads over a real range; ``input_side``: the
    processor's target (518 as published; smaller makes tests faster)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    sz = DEPTH_ANYTHING_SIZES[size]
    torch.manual_seed(seed)
    # the last 4 layers feed the neck (``out_features``: transformers' typed signature only
    # spells it ``_out_features``, so it goes through a plain dict)
    stages: dict[str, Any] = {
        "out_features": [f"stage{i}" for i in range(sz.layers - 3, sz.layers + 1)]
    }
    backbone = Dinov2Config(
        hidden_size=sz.hidden,
        num_hidden_layers=sz.layers,
        num_attention_heads=sz.heads,
        patch_size=14,
        image_size=518,
        reshape_hidden_states=False,
        **stages,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=sz.reassemble,
        neck_hidden_sizes=list(sz.neck),
        fusion_hidden_size=sz.fusion,
        head_hidden_size=sz.head,
    )
    model = DepthAnythingForDepthEstimation(cfg).eval()
    with torch.no_grad():  # transformers' 0.02-std init makes the depth ~1e-8 and mostly 0
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
                module.weight.normal_(0, module.weight[0].numel() ** -0.5)
        model.head.conv3.bias.fill_(1.0)  # the final ReLU then seldom clips
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    DPTImageProcessorPil(
        do_resize=True,
        size={"height": input_side, "width": input_side},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    ).save_pretrained(folder)
    return folder
