"""The command lines of ``python -m train.evaluate`` and ``deepspeed train/main.py``:
``--help`` explains every option and lists every config key (one mechanism,
``shards.config.ConfigCLI``), and the flags keep their meaning."""

from __future__ import annotations

import pytest

from tests.model.helpers import assert_help_explains_everything, help_exits_cleanly
from train import evaluate
from train import main as train_main
from train.config import TrainConfig
from train.evaluate import EvalConfig


def test_evaluate_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    _, parser = evaluate.build_cli()
    text = assert_help_explains_everything(
        parser, EvalConfig, ("sampling.eta", "standard.size", "standard.clip_len")
    )
    assert "--heldout-of" in text and "--stand-in-features" in text and "--ablate" in text
    assert help_exits_cleanly(evaluate.main, capsys) == text


def test_train_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    _, parser = train_main.build_cli()
    text = assert_help_explains_everything(
        parser, TrainConfig, ("train.lr", "data.where", "validation.every", "stage.frames")
    )
    assert "--config" in text and "--resume" in text and "--local_rank" not in text
    assert help_exits_cleanly(train_main.main, capsys) == text


def test_evaluate_flags_and_overrides_set_the_same_keys() -> None:
    base = ["--checkpoint", "m", "--data", "d", "--out", "o"]
    flags = ["--ablate", "none,flow", "--metrics", "l1,psnr", "--stand-in-features"]
    flags += ["--steps", "2", "--heldout-of", "run", "standard.size=64", "sampling.steps=3"]
    cfg = evaluate.parse_args([*base, *flags])
    assert cfg.ablate == ["none", "flow"] and cfg.metrics == ["l1", "psnr"]
    assert cfg.stand_in_features and cfg.heldout_of == "run" and cfg.standard.size == 64
    assert cfg.sampling.steps == 3 and cfg.clips == 0 and cfg.device == "auto"
    for bad in (["--ablate", "hands"], ["--metrics", "is"], ["--dtype", "float64"]):
        with pytest.raises(SystemExit):
            evaluate.parse_args([*base, *bad])


def test_train_config_is_preset_then_overrides() -> None:
    args, cfg = train_main.parse_args(
        ["--config", "jobs/train/tiny_stage1.yaml", "data.root=d", "init_from=m", "train.lr=0.5"]
    )
    assert not args.resume and cfg.train.lr == 0.5 and cfg.data.root == "d"
    assert cfg.stage.name == "stage1"
    with pytest.raises(SystemExit):
        train_main.parse_args(["data.root=d"])  # --config is required
