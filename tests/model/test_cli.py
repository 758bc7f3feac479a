"""The command lines of ``python -m model.init`` and ``python -m model.animate``: ``--help``
explains every option and lists every config key (one mechanism, ``shards.config.ConfigCLI``),
and the flags keep their meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import animate, init
from model.animate import AnimateConfig
from model.config import ModelConfig
from model.folder import read_model_config
from tests.model.helpers import assert_help_explains_everything, help_exits_cleanly


def test_animate_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    _, parser = animate.build_cli()
    text = assert_help_explains_everything(
        parser, AnimateConfig, ("sampling.eta", "pose.input_size", "depth.backend")
    )
    assert "--guidance-scale" in text and "--pose-model" in text and "KEY=VALUE" in text
    assert help_exits_cleanly(animate.main, capsys) == text


def test_init_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    _, parser = init.build_cli()
    text = assert_help_explains_everything(
        parser, ModelConfig, ("guiders.block_out_channels", "weights.unet", "geometry.dilation")
    )
    assert "--preset" in text and "--image-encoder" in text and "--random" in text
    assert help_exits_cleanly(init.main, capsys) == text


def test_animate_flags_and_overrides_set_the_same_keys() -> None:
    base = ["--checkpoint", "m", "--reference", "r.png", "--driving", "d.mp4", "--out", "o.mp4"]
    flags = ["--steps", "3", "--guidance-scale", "2.5", "--pose-backend", "precomputed"]
    flags += ["--dtype", "float32", "--max-frames", "7", "sampling.steps=4", "pose.input_size=384"]
    cfg = animate.parse_args([*base, *flags])
    assert cfg.sampling.steps == 4  # overrides come after flags
    assert cfg.sampling.guidance_scale == 2.5 and cfg.pose.backend == "precomputed"
    assert cfg.pose.input_size == 384 and cfg.dtype == "float32" and cfg.max_frames == 7
    assert cfg.side_by_side == "" and cfg.sampling.height == 896  # defaults kept
    with pytest.raises(SystemExit):
        animate.parse_args([*base, "--dtype", "float64"])
    with pytest.raises(SystemExit):
        animate.parse_args(base[:-2])  # --out is required


def test_init_flags_sit_between_preset_and_overrides(tmp_path: Path) -> None:
    out = tmp_path / "m"
    argv = ["--preset", "tiny", "--out", str(out), "--seed", "5", "--unet", "u/"]
    args, cfg = init.parse_args([*argv, "guiders.block_out_channels=[4,8,8,16]", "seed=6"])
    assert cfg.preset == "tiny" and cfg.unet.block_out_channels == [32, 64]  # the tiny preset
    assert cfg.weights.unet == "u/" and cfg.seed == 6 and args.out == str(out)
    assert cfg.guiders.block_out_channels == [4, 8, 8, 16] and not cfg.motion.enabled
    _, stage2 = init.parse_args(["--preset", "tiny", "--out", "x", "--motion-module", "mm.ckpt"])
    assert stage2.motion.enabled and stage2.weights.motion_module == "mm.ckpt"
    assert (
        init.main(["--preset", "tiny", "--out", "x", "--motion-module", "m", "--stage", "1"]) == 2
    )
    assert init.main(["--preset", "tiny", "--out", str(out), "--dtype", "bfloat16"]) == 0
    assert read_model_config(out).preset == "tiny"
