"""Typed config: defaults < YAML < CLI, clear errors, round trip of the resolved config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from preprocess.config import PreprocessConfig
from shards.config import ConfigError, config_from_dict, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def test_precedence_defaults_yaml_cli(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("flow:\n  preset: fast\ndecode:\n  max_fps: 12\n")
    cfg = load_config(PreprocessConfig, preset, ["decode.max_fps=8"])
    assert cfg.flow.preset == "fast"  # YAML over default
    assert cfg.decode.max_fps == 8.0  # CLI over YAML
    assert cfg.decode.clip_frames == PreprocessConfig().decode.clip_frames  # default kept


def test_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"flow\.nope"):
        load_config(PreprocessConfig, None, ["flow.nope=1"])
    with pytest.raises(ConfigError, match=r"decode\.max_fps"):
        load_config(PreprocessConfig, None, ["decode.max_fps=fast"])
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        load_config(PreprocessConfig, None, ["flow.preset"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(PreprocessConfig, bad)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("flow: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(yaml.constructor.ConstructorError):
        load_config(PreprocessConfig, evil)


def test_resolved_config_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCANIM_ASSETS", "/data/assets")
    cfg = load_config(PreprocessConfig, REPO / "jobs/preprocess/cpu.yaml", ["flow.preset=fast"])
    assert cfg.pose.model == "/data/assets/models/movenet_multipose.onnx"  # env resolved
    dump_config(cfg, tmp_path / "config.yaml")
    back = config_from_dict(
        PreprocessConfig, yaml.safe_load((tmp_path / "config.yaml").read_text())
    )
    assert back == cfg
