"""Reference attention: the denoising UNet's self-attention reaches the ReferenceNet's tokens."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from model.components import build_unet
from model.guiders import Conditions
from model.reference_attention import (
    ReferenceBank,
    ReferenceReader,
    ReferenceWriter,
    install_reference_attention,
    spatial_self_attention_layers,
)
from tests.model.helpers import conditions, inputs, tiny_cfg, tiny_model


def _manual_attention(attn: Attention, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v with the layer's projections, written out by hand."""
    heads = attn.heads
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    split = lambda t: t.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    weights = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)
    out = (weights @ v).transpose(1, 2).flatten(2)
    return attn.to_out[0](out)


@torch.no_grad()
def test_reader_attends_over_own_and_reference_tokens_per_frame() -> None:
    model = tiny_model()
    name = model.attention_layers[0]
    attn = spatial_self_attention_layers(model.unet)[name]
    assert isinstance(attn.processor, ReferenceReader)
    g = torch.Generator().manual_seed(0)
    b, f, length, ref_length, c = 2, 3, 12, 10, attn.to_q.in_features
    x = torch.randn(b * f, length, c, generator=g)
    ref = torch.randn(b, ref_length, c, generator=g)
    model.bank.tokens, model.bank.keep = {name: ref}, None
    got = attn(x)
    ref_per_frame = ref.repeat_interleave(f, dim=0)  # clip b's tokens for each of its frames
    want = _manual_attention(attn, x, torch.cat([x, ref_per_frame], dim=1))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # Without reference tokens the layer is plain self-attention, which differs.
    model.bank.tokens = {}
    torch.testing.assert_close(attn(x), _manual_attention(attn, x, x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(attn(x), got, atol=1e-4)


@torch.no_grad()
def test_the_reference_changes_the_output() -> None:
    model = tiny_model()
    x = inputs(1, 2)
    cond = conditions(1, 2)
    out = model(**x, conditions=cond)
    assert torch.equal(model(**x, conditions=cond), out)
    other = dict(x, reference_latents=torch.randn_like(x["reference_latents"]))
    assert not torch.allclose(model(**other, conditions=cond), out, atol=1e-4)
    # ... through the reference tokens alone (same CLIP context, no guiders).
    ctx = x["clip_embeds"]
    ref_a = model.encode_reference(x["reference_latents"], ctx)
    ref_b = model.encode_reference(other["reference_latents"], ctx)
    pred_a = model.denoise(x["noisy_latents"], x["timesteps"], ctx, None, ref_a)
    pred_b = model.denoise(x["noisy_latents"], x["timesteps"], ctx, None, ref_b)
    assert not torch.allclose(pred_a, pred_b, atol=1e-4)


@torch.no_grad()
def test_reference_keep_drops_the_reference_per_clip() -> None:
    model = tiny_model()
    x = inputs(2, 2)
    cond = conditions(2, 2)
    keep = torch.tensor([True, False])
    both = model(**x, conditions=cond, reference_keep=keep)
    # Clip 0 as if alone with its reference; clip 1 as if alone with no reference at all.
    one = {k: v[:1] for k, v in x.items()}
    c_one = Conditions(*(t[:1] for t in cond.tensors().values()))
    torch.testing.assert_close(both[:1], model(**one, conditions=c_one), rtol=1e-4, atol=1e-5)
    two = {k: v[1:] for k, v in x.items()}
    c_two = Conditions(*(t[1:] for t in cond.tensors().values()))
    context = torch.zeros_like(two["clip_embeds"])
    c_multi = model.guide(c_two)
    alone = model.denoise(two["noisy_latents"], two["timesteps"], context, c_multi, None)
    torch.testing.assert_close(both[1:], alone, rtol=1e-4, atol=1e-5)


def test_only_spatial_self_attention_gets_reference_tokens() -> None:
    model = tiny_model(motion=True)
    readers = [
        m
        for m in model.unet.modules()
        if isinstance(getattr(m, "processor", None), ReferenceReader)
    ]
    writers = [
        m
        for m in model.reference_unet.modules()
        if isinstance(getattr(m, "processor", None), ReferenceWriter)
    ]
    # tiny UNet: 2 down + 1 mid + 3 up transformer blocks with spatial self-attention
    assert len(readers) == len(writers) == len(model.attention_layers) == 6
    temporal = [
        m
        for n, m in model.unet.named_modules()
        if isinstance(m, Attention) and ".motion_modules." in n
    ]
    assert temporal, "the stage-2 UNet has temporal attention"
    assert not any(isinstance(m.processor, ReferenceReader | ReferenceWriter) for m in temporal)


@torch.no_grad()
def test_stage2_with_fresh_motion_modules_equals_stage1_per_frame() -> None:
    """Zero-initialised motion modules are the identity, so the motion UNet must reproduce the
    2D UNet frame by frame: checks the (B, F) layouts of latents, context and reference."""
    stage1, stage2 = tiny_model(), tiny_model(motion=True)
    stage2.load_state_dict(stage1.state_dict(), strict=False)
    x = inputs(2, 3)
    cond = conditions(2, 3)
    torch.testing.assert_close(
        stage2(**x, conditions=cond), stage1(**x, conditions=cond), rtol=1e-4, atol=1e-5
    )


def test_install_rejects_unets_with_different_layers() -> None:
    small, motion = tiny_model(), tiny_model(motion=True)
    cfg = tiny_cfg()
    cfg.unet.layers_per_block = 1
    with pytest.raises(ValueError, match="differ"):
        install_reference_attention(build_unet(cfg), motion.unet, ReferenceBank())
    assert small.attention_layers == motion.attention_layers
