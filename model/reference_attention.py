"""Reference attention through diffusers attention processors (no copied UNet code).

The ReferenceNet is a second SD-1.5 UNet. Its spatial self-attention layers (``attn1`` of the
transformer blocks under ``*.attentions.*``) get a :class:`ReferenceWriter` processor that
records the normalised hidden states entering the layer, ``(B, L, C)``, under the layer's
name, then attends as usual. The denoising UNet's spatial self-attention layers of the same
names get a :class:`ReferenceReader`: it attends over its own tokens and the recorded
reference tokens, ``softmax(q [k_self, k_ref]^T) [v_self, v_ref]`` with the layer's own
projections, via diffusers' ``AttnProcessor2_0`` given the concatenated context.

Frames: the denoising UNet works on ``B * F`` images (stage 1 folds frames into the batch;
``UNetMotionModel`` does the same inside), so the reference tokens of clip ``b`` are repeated
for its ``F`` frames. The motion modules' temporal attention lives under ``*.motion_modules.*``
and keeps the default processor: it never sees reference tokens.

Dropping the reference (classifier-free guidance): ``ReferenceBank.keep`` (B,) bool masks the
reference tokens of the dropped clips out of the softmax; ``ReferenceBank.tokens = {}`` turns
reference attention off for the whole batch (plain self-attention).

The bank is written by one forward and read by the next; it keeps its tensors until the next
write, so activation checkpointing that recomputes a block in the backward pass reads the same
tokens. One bank serves one model; it is not meant for concurrent forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


@dataclass
class ReferenceBank:
    """Reference tokens per spatial self-attention layer, shared by writer and reader."""

    tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B, L, C)
    keep: torch.Tensor | None = None  # (B,) bool; None = every clip keeps its reference


def spatial_self_attention_layers(unet: nn.Module) -> dict[str, Attention]:
    """The spatial ``attn1`` layers of a diffusers UNet (2D or motion), by module name."""
    return {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and name.endswith(".attn1") and ".attentions." in name
    }


class ReferenceWriter(AttnProcessor2_0):
    """Records the hidden states entering a ReferenceNet ``attn1``, then attends normally."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        super().__init__()
        self.bank = bank
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,  # (B, L, C), already layer-normed
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.bank.tokens[self.name] = hidden_states
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReader(AttnProcessor2_0):
    """Self-attention of the denoising UNet over its own and the reference tokens."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        super().__init__()
        self.bank = bank
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,  # (B*F, L, C), already layer-normed
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ref = self.bank.tokens.get(self.name)
        if ref is None:
            return super().__call__(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb
            )
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("reference attention expects plain self-attention in attn1")
        n, length, _ = hidden_states.shape
        frames = _frames_per_clip(n, ref.shape[0])
        ref = ref.to(hidden_states.dtype).repeat_interleave(frames, dim=0)  # (B*F, L_ref, C)
        context = torch.cat([hidden_states, ref], dim=1)  # (B*F, L + L_ref, C)
        mask = _reference_mask(self.bank.keep, frames, length, ref.shape[1], hidden_states)
        return super().__call__(attn, hidden_states, context, mask, temb)


def _frames_per_clip(batch_frames: int, clips: int) -> int:
    if clips == 0 or batch_frames % clips:
        raise ValueError(f"{batch_frames} denoising images do not split into {clips} clips")
    return batch_frames // clips


def _reference_mask(
    keep: torch.Tensor | None, frames: int, length: int, ref_length: int, like: torch.Tensor
) -> torch.Tensor | None:
    """Additive mask (B*F, 1, L + L_ref): -inf on the reference tokens of dropped clips."""
    if keep is None or bool(keep.all()):
        return None
    keep = keep.to(like.device).repeat_interleave(frames)  # (B*F,)
    mask = torch.zeros(keep.shape[0], 1, length + ref_length, dtype=like.dtype, device=like.device)
    mask[~keep, :, length:] = float("-inf")
    return mask


def install_reference_attention(
    reference_unet: nn.Module, unet: nn.Module, bank: ReferenceBank
) -> list[str]:
    """Writers on the ReferenceNet, readers on the denoising UNet; returns the layer names."""
    writers = spatial_self_attention_layers(reference_unet)
    readers = spatial_self_attention_layers(unet)
    if sorted(writers) != sorted(readers):
        missing = sorted(set(writers) ^ set(readers))
        raise ValueError(f"ReferenceNet and UNet self-attention layers differ: {missing[:4]}")
    for name in writers:
        writers[name].set_processor(ReferenceWriter(bank, name))  # type: ignore[arg-type]
        readers[name].set_processor(ReferenceReader(bank, name))  # type: ignore[arg-type]
    return sorted(writers)
