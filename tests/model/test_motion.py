"""AnimateDiff motion modules: the original checkpoint's key names map strictly into diffusers.

The original key layout is written out here from AnimateDiff's own module structure
(``animatediff/models/motion_module.py``: VanillaTemporalModule -> temporal_transformer ->
transformer_blocks -> attention_blocks / norms / ff / ff_norm), independently of the converter.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.config import preset_config
from model.motion import build_motion_adapter, convert_original_motion_module
from model.weights import WeightsError, load_motion_adapter

# Per-block suffix (original) -> suffix (diffusers), for block "transformer_blocks.0".
ORIGINAL_TO_DIFFUSERS = {
    "attention_blocks.0.pos_encoder.pe": "pos_embed.pe",
    **{
        f"attention_blocks.{a}.{p}": f"attn{a + 1}.{p}"
        for a in (0, 1)
        for p in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias")
    },
    **{f"norms.{a}.{p}": f"norm{a + 1}.{p}" for a in (0, 1) for p in ("weight", "bias")},
    **{
        f"ff.net.{p}": f"ff.net.{p}" for p in ("0.proj.weight", "0.proj.bias", "2.weight", "2.bias")
    },
    "ff_norm.weight": "norm3.weight",
    "ff_norm.bias": "norm3.bias",
}


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * div)
    table[0, :, 1::2] = torch.cos(position * div)
    return table


def original_shapes(channels: list[int], max_len: int = 32) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of an AnimateDiff v2 checkpoint (mm_sd_v15_v2.ckpt for SD 1.5):
    2 modules in every down block, 1 in the mid block, 3 in every up block."""
    places = [(f"down_blocks.{i}", c, 2) for i, c in enumerate(channels)]
    places += [("mid_block", channels[-1], 1)]
    places += [(f"up_blocks.{i}", c, 3) for i, c in enumerate(reversed(channels))]
    shapes: dict[str, tuple[int, ...]] = {}
    for prefix, c, n in places:
        for j in range(n):
            base = f"{prefix}.motion_modules.{j}.temporal_transformer"
            for layer in ("proj_in", "proj_out"):
                shapes |= {f"{base}.{layer}.weight": (c, c), f"{base}.{layer}.bias": (c,)}
            shapes |= {f"{base}.norm.weight": (c,), f"{base}.norm.bias": (c,)}
            block = f"{base}.transformer_blocks.0"
            for a in (0, 1):
                att = f"{block}.attention_blocks.{a}"
                shapes |= {
                    f"{att}.{p}.weight": (c, c) for p in ("to_q", "to_k", "to_v", "to_out.0")
                }
                shapes |= {f"{att}.to_out.0.bias": (c,), f"{att}.pos_encoder.pe": (1, max_len, c)}
                shapes |= {f"{block}.norms.{a}.weight": (c,), f"{block}.norms.{a}.bias": (c,)}
            shapes |= {
                f"{block}.ff.net.0.proj.weight": (8 * c, c),
                f"{block}.ff.net.0.proj.bias": (8 * c,),
            }
            shapes |= {f"{block}.ff.net.2.weight": (c, 4 * c), f"{block}.ff.net.2.bias": (c,)}
            shapes |= {f"{block}.ff_norm.weight": (c,), f"{block}.ff_norm.bias": (c,)}
    return shapes


def original_checkpoint(channels: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in original_shapes(channels).items():
        if key.endswith("pos_encoder.pe"):
            state[key] = sinusoid_table(shape[1], shape[2])
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return state


def expected_diffusers_key(original: str) -> str | None:
    head, _, suffix = original.partition(".temporal_transformer.")
    if suffix.startswith("transformer_blocks.0."):
        inner = suffix.removeprefix("transformer_blocks.0.")
        if inner == "attention_blocks.1.pos_encoder.pe":
            return None  # the duplicate table
        return f"{head}.transformer_blocks.0.{ORIGINAL_TO_DIFFUSERS[inner]}"
    return f"{head}.{suffix}"


def test_full_size_v2_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """A real-sized (453M parameters, fp32) file with mm_sd_v15_v2.ckpt's key names."""
    original = original_checkpoint([320, 640, 1280, 1280])
    assert len(original) == 588
    assert sum(v.numel() for v in original.values()) > 450_000_000
    path = tmp_path / "mm_sd_v15_v2.ckpt"
    torch.save(original, path)
    adapter = load_motion_adapter(path, preset_config("sd15", motion=True))
    loaded = adapter.state_dict()
    assert len(loaded) == 567
    for key, value in original.items():
        target = expected_diffusers_key(key)
        if target is not None:
            assert torch.equal(loaded[target], value), key
    covered = {expected_diffusers_key(k) for k in original} - {None}
    assert covered == set(loaded)


def test_tiny_checkpoint_round_trip_and_wrapper(tmp_path: Path) -> None:
    cfg = preset_config("tiny", motion=True)
    original = original_checkpoint(cfg.unet.block_out_channels)
    path = tmp_path / "mm.ckpt"
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in original.items()}, "global_step": 7}, path
    )
    adapter = load_motion_adapter(path, cfg)
    key = "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.ff_norm.weight"
    assert torch.equal(adapter.state_dict()[expected_diffusers_key(key)], original[key])


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("drop", WeightsError, "missing keys"),
        ("extra", WeightsError, "unexpected keys"),
        ("pe", ValueError, "position table"),
    ],
)
def test_original_checkpoints_that_do_not_fit_are_rejected(
    tmp_path: Path, change: str, error: type[Exception], message: str
) -> None:
    cfg = preset_config("tiny", motion=True)
    original = original_checkpoint(cfg.unet.block_out_channels)
    pe1 = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    if change == "drop":
        del original["down_blocks.0.motion_modules.1.temporal_transformer.proj_out.bias"]
    elif change == "extra":
        original["mid_block.motion_modules.1.temporal_transformer.norm.weight"] = torch.ones(64)
    else:
        original[pe1] = original[pe1] + 1
    path = tmp_path / "mm.ckpt"
    torch.save(original, path)
    with pytest.raises(error, match=message):
        load_motion_adapter(path, cfg)


def test_non_motion_keys_are_an_error() -> None:
    with pytest.raises(KeyError, match="not a motion-module key"):
        convert_original_motion_module({"conv_in.weight": torch.zeros(1)})


def test_diffusers_adapter_folder_loads_strictly(tmp_path: Path) -> None:
    cfg = preset_config("tiny", motion=True)
    source = build_motion_adapter(cfg, zero_init=False)
    source.save_pretrained(tmp_path / "adapter")
    adapter = load_motion_adapter(tmp_path / "adapter", cfg)
    for (name, a), b in zip(
        source.state_dict().items(), adapter.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    # An adapter of another shape (v1's 24-frame position table) does not fit the config.
    cfg_v1 = preset_config("tiny", motion=True)
    cfg_v1.motion.max_seq_length = 24
    build_motion_adapter(cfg_v1).save_pretrained(tmp_path / "v1")
    with pytest.raises(WeightsError, match="does not match"):
        load_motion_adapter(tmp_path / "v1", cfg)


def test_fresh_adapters_start_as_identity() -> None:
    adapter = build_motion_adapter(preset_config("tiny", motion=True))
    outs = [p for n, p in adapter.named_parameters() if ".proj_out." in n]
    assert outs and all(not p.detach().any() for p in outs)


def test_missing_motion_module_names_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"mm_sd_v15_v2\.ckpt"):
        load_motion_adapter(tmp_path / "nope.ckpt", preset_config("tiny", motion=True))
