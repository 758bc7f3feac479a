"""The four guiders and their sum ``c_multi`` (docs/design.md §5, paper §4).

Each guider is the same per-frame conv stack: diffusers' ``ControlNetConditioningEmbedding``
(conv_in, three (conv, stride-2 conv) pairs, zero-initialised conv_out = 8 conv layers, SiLU
between), taking a condition at pixel resolution (H, W) to the latent resolution (H/8, W/8)
and the UNet's first block width. ``c_multi`` is the sum of the four outputs and is added to
the noise-latent features right after the denoising UNet's ``conv_in`` (see
:mod:`model.composed`). With the zero-initialised conv_out a fresh model is exactly the UNet
without guiders. A model may have fewer than four (``guiders.names`` of its config, e.g. the
paper's ablation variants trained without the depth-order guider): only those are built, and
``c_multi`` is the sum of theirs; inputs for guiders the model lacks are ignored.

Condition tensors are float, channels first, per frame:

========================  ==========================  ===================================
name                      shape                       values
========================  ==========================  ===================================
``pose``                  (B, F, 3, H, W)             rendered pose map / 255, in [0, 1]
``flow``                  (B, F, 2, H, W)             flow guider input (docs/design.md §3)
``order``                 (B, F, 1, H, W)             depth-order map / 255, in [0, 1]
``reference_pose``        (B, 1, 3, H, W) or F        reference pose map / 255
========================  ==========================  ===================================

They are made in one place, :meth:`Conditions.from_maps` (uint8 maps / 255, flow as is),
which inference (:meth:`Conditions.from_arrays` of
:class:`preprocess.geometry.canvas.GuiderArrays`) and training
(``train.loader.Batch.conditions``) both call, so the two can never normalise differently.
A condition the model has no guider for may be None (not built, not fed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn

from model.config import GUIDER_NAMES, GuiderConfig
from preprocess.geometry.canvas import GuiderArrays

__all__ = ["GUIDER_NAMES", "Conditions", "Guiders"]


@dataclass
class Conditions:
    """The guiders' inputs for a batch of clips (see the module docstring for layouts); a
    condition is None when the model has no guider for it."""

    pose: torch.Tensor | None  # (B, F, 3, H, W)
    flow: torch.Tensor | None  # (B, F, 2, H, W)
    order: torch.Tensor | None  # (B, F, 1, H, W)
    reference_pose: torch.Tensor | None  # (B, 1, 3, H, W), broadcast over frames (or F)

    @classmethod
    def from_maps(
        cls,
        pose: torch.Tensor | None,
        flow: torch.Tensor | None,
        order: torch.Tensor | None,
        reference_pose: torch.Tensor | None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Conditions:
        """The one normalisation of the guider inputs, for training and inference alike.

        Channels-first tensors as the data pipeline holds them: ``pose`` (B, F, 3, H, W),
        ``order`` (B, F, 1, H, W) and ``reference_pose`` (B, 1, 3, H, W) uint8 maps become
        [0, 1] (/ 255); ``flow`` (B, F, 2, H, W), already the float flow guider input, is
        kept as is. Moved to ``device`` before the conversion (uint8 travels light), then
        cast to ``dtype``. Float maps are refused: they would be divided twice or never.
        None stays None (a guider the model does not have).
        """

        def unit(name: str, t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            if t.dtype != torch.uint8:
                raise TypeError(f"guider map {name} must be uint8 (0..255), got {t.dtype}")
            return (t.to(device, non_blocking=True).float() / 255).to(dtype)

        if flow is not None and not flow.is_floating_point():
            raise TypeError(f"the flow guider input must be float, got {flow.dtype}")
        return cls(
            pose=unit("pose", pose),
            flow=None if flow is None else flow.to(device, non_blocking=True).to(dtype),
            order=unit("order", order),
            reference_pose=unit("reference_pose", reference_pose),
        )

    @classmethod
    def from_arrays(
        cls,
        arrays: GuiderArrays,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Conditions:
        """The conditions of one clip (B = 1) from its channels-last guider arrays (pose
        (T, H, W, 3), flow (T, H, W, 2), order (T, H, W), reference pose (H, W, 3); None
        where not built), through :meth:`from_maps`."""

        def frames(a: np.ndarray | None) -> torch.Tensor | None:  # (T, H, W, C) -> (1, T, C, H, W)
            if a is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)[None]

        order, ref = arrays.order, arrays.reference_pose
        return cls.from_maps(
            frames(arrays.pose),
            frames(arrays.flow),
            frames(None if order is None else order[..., None]),
            frames(None if ref is None else ref[None]),
            device=device,
            dtype=dtype,
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """The conditions that are there, by guider name."""
        found = {name: getattr(self, name) for name in GUIDER_NAMES}
        return {name: t for name, t in found.items() if t is not None}

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Conditions:
        moved = {k: v.to(device, dtype) for k, v in self.tensors().items()}
        return Conditions(**{name: moved.get(name) for name in GUIDER_NAMES})

    def frames(self, start: int, stop: int) -> Conditions:
        """The conditions of frames ``start:stop`` (a one-frame reference pose is kept whole)."""
        kept = {
            name: t if name == "reference_pose" and t.shape[1] == 1 else t[:, start:stop]
            for name, t in self.tensors().items()
        }
        return Conditions(**{name: kept.get(name) for name in GUIDER_NAMES})

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, F, H, W) of the driving conditions (the first per-frame one there)."""
        for t in (self.pose, self.flow, self.order):
            if t is not None:
                b, f, _, h, w = t.shape
                return b, f, h, w
        raise ValueError("no per-frame condition (pose, flow or order) to give the frames")


def _input_channels(cfg: GuiderConfig) -> dict[str, int]:
    channels = {
        "pose": cfg.pose_channels,
        "flow": cfg.flow_channels,
        "order": cfg.order_channels,
        "reference_pose": cfg.reference_pose_channels,
    }
    return {name: channels[name] for name in GUIDER_NAMES if name in cfg.names}


class Guiders(nn.Module):
    """The model's guiders (``cfg.names`` of pose, flow, depth order, reference pose);
    ``forward`` returns ``c_multi``."""

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

    @property
    def names(self) -> list[str]:
        """The guiders this model has, in summation order."""
        return list(self.guiders.keys())

    def embed(self, name: str, condition: torch.Tensor) -> torch.Tensor:
        """One guider, per frame: (B, F, C_k, H, W) -> (B, F, C0, H/8, W/8)."""
        b, f, c, h, w = condition.shape
        out = self.guiders[name](condition.reshape(b * f, c, h, w))  # (B*F, C0, H/8, W/8)
        return out.reshape(b, f, *out.shape[1:])

    def forward(self, conditions: Conditions) -> torch.Tensor:
        """``c_multi`` (B, F, C0, H/8, W/8): the sum of the model's guiders' outputs (inputs
        for guiders it does not have are ignored; one it has must be there)."""
        b, f, h, w = conditions.shape
        if h % 8 or w % 8:
            raise ValueError(f"conditions must be multiples of 8 pixels, got {h}x{w}")
        given = conditions.tensors()
        c_multi = None
        for name in self.names:
            tensor = given.get(name)
            if tensor is None:
                raise ValueError(f"the model's {name} guider has no input (conditions.{name})")
            if tensor.shape[0] != b or tensor.shape[-2:] != (h, w):
                raise ValueError(
                    f"condition {name} has shape {tuple(tensor.shape)}, "
                    f"expected (B={b}, F, C, {h}, {w})"
                )
            out = self.embed(name, tensor)  # (B, F or 1, C0, h, w)
            c_multi = out if c_multi is None else c_multi + out  # broadcasts a (B, 1, ...) ref
        assert c_multi is not None
        return c_multi.expand(b, f, *c_multi.shape[2:])
