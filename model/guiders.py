"""The four guiders and their sum ``c_multi`` (DESIGN §5, paper §4).

Each guider is the same per-frame conv stack: diffusers' ``ControlNetConditioningEmbedding``
(conv_in, three (conv, stride-2 conv) pairs, zero-initialised conv_out = 8 conv layers, SiLU
between), taking a condition at pixel resolution (H, W) to the latent resolution (H/8, W/8)
and the UNet's first block width. ``c_multi`` is the sum of the four outputs and is added to
the noise-latent features right after the denoising UNet's ``conv_in`` (see
:mod:`model.composed`). With the zero-initialised conv_out a fresh model is exactly the UNet
without guiders.

Condition tensors are float, channels first, per frame:

========================  ==========================  ===================================
name                      shape                       values
========================  ==========================  ===================================
``pose``                  (B, F, 3, H, W)             rendered pose map / 255, in [0, 1]
``flow``                  (B, F, 2, H, W)             flow guider input (DESIGN §3)
``order``                 (B, F, 1, H, W)             depth-order map / 255, in [0, 1]
``reference_pose``        (B, 1, 3, H, W) or F        reference pose map / 255
========================  ==========================  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn

from model.config import GuiderConfig

GUIDER_NAMES = ("pose", "flow", "order", "reference_pose")


@dataclass
class Conditions:
    """The guiders' inputs for a batch of clips (see the module docstring for layouts)."""

    pose: torch.Tensor  # (B, F, 3, H, W)
    flow: torch.Tensor  # (B, F, 2, H, W)
    order: torch.Tensor  # (B, F, 1, H, W)
    reference_pose: torch.Tensor  # (B, 1, 3, H, W), broadcast over frames (or (B, F, 3, H, W))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in GUIDER_NAMES}

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Conditions:
        return Conditions(**{k: v.to(device, dtype) for k, v in self.tensors().items()})

    def frames(self, start: int, stop: int) -> Conditions:
        """The conditions of frames ``start:stop`` (the reference pose is kept whole)."""
        ref = self.reference_pose
        ref = ref if ref.shape[1] == 1 else ref[:, start:stop]
        return Conditions(
            self.pose[:, start:stop], self.flow[:, start:stop], self.order[:, start:stop], ref
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, F, H, W) of the driving conditions."""
        b, f, _, h, w = self.pose.shape
        return b, f, h, w


def _input_channels(cfg: GuiderConfig) -> dict[str, int]:
    return {
        "pose": cfg.pose_channels,
        "flow": cfg.flow_channels,
        "order": cfg.order_channels,
        "reference_pose": cfg.reference_pose_channels,
    }


class Guiders(nn.Module):
    """Pose, flow, depth-order and reference-pose guiders; ``forward`` returns ``c_multi``."""

    def __init__(self, cfg: GuiderConfig, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.guiders = nn.ModuleDict(
            {
                name: ControlNetConditioningEmbedding(
                    conditioning_embedding_channels=out_channels,
                    conditioning_channels=channels,
                    block_out_channels=tuple(cfg.block_out_channels),
                )
                for name, channels in _input_channels(cfg).items()
            }
        )

    def embed(self, name: str, condition: torch.Tensor) -> torch.Tensor:
        """One guider, per frame: (B, F, C_k, H, W) -> (B, F, C0, H/8, W/8)."""
        b, f, c, h, w = condition.shape
        out = self.guiders[name](condition.reshape(b * f, c, h, w))  # (B*F, C0, H/8, W/8)
        return out.reshape(b, f, *out.shape[1:])

    def forward(self, conditions: Conditions) -> torch.Tensor:
        """``c_multi`` (B, F, C0, H/8, W/8): the sum of the four guiders' outputs."""
        b, f, h, w = conditions.shape
        if h % 8 or w % 8:
            raise ValueError(f"conditions must be multiples of 8 pixels, got {h}x{w}")
        c_multi = None
        for name, tensor in conditions.tensors().items():
            if tensor.shape[0] != b or tensor.shape[-2:] != (h, w):
                raise ValueError(
                    f"condition {name} has shape {tuple(tensor.shape)}, "
                    f"expected (B={b}, F, C, {h}, {w})"
                )
            out = self.embed(name, tensor)  # (B, F or 1, C0, h, w)
            c_multi = out if c_multi is None else c_multi + out  # broadcasts a (B, 1, ...) ref
        assert c_multi is not None
        return c_multi.expand(b, f, *c_multi.shape[2:])
