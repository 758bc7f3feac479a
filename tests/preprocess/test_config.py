"""Typed config: defaults < YAML < CLI, clear errors, round trip of the resolved config, an
output's versioned config read back, and ``--help`` of ``python -m preprocess`` and
``python -m preprocess.weights``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from preprocess.__main__ import main as preprocess_main
from preprocess.config import PreprocessConfig, read_output_config
from preprocess.weights import main as weights_main
from shards.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    describe_keys,
    dump_config,
    load_config,
)
from shards.schema import (
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    FormatVersionError,
    with_format_version,
)

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
    assert cfg.pose.model == "/data/assets/models/movenet_thunder.onnx"  # env resolved
    assert cfg.pose.detector == "/data/assets/models/nanodet_m_416.onnx"
    dump_config(cfg, tmp_path / "config.yaml")
    back = config_from_dict(
        PreprocessConfig, yaml.safe_load((tmp_path / "config.yaml").read_text())
    )
    assert back == cfg


def test_output_config_is_read_back_with_its_format_version(tmp_path: Path) -> None:
    cfg = load_config(PreprocessConfig, None, ["geometry.dilation=0.1", "flow.preset=fast"])
    data = with_format_version(config_to_dict(cfg))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert read_output_config(str(tmp_path)) == cfg

    data[FORMAT_VERSION_KEY] = FORMAT_VERSION + 1  # written by a newer mcanim
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(FormatVersionError, match=r"config\.yaml: format version \d+ is newer"):
        read_output_config(str(tmp_path))
    del data[FORMAT_VERSION_KEY]  # written before versions
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(FormatVersionError, match="no format_version"):
        read_output_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"nothing/config\.yaml not found"):
        read_output_config(str(tmp_path / "nothing"))


def test_help_explains_every_option_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (preprocess_main, weights_main):
        with pytest.raises(SystemExit) as exc:
            command(["--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert undocumented(text) == [], text
    with pytest.raises(SystemExit):
        preprocess_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in describe_keys(PreprocessConfig):
        doc = " ".join(key.doc.split())
        assert key.key in text and doc and doc in text, key.key
    assert undocumented("options:\n  --bare\n  --ok        does things\n") == ["--bare"]


def undocumented(help_text: str) -> list[str]:
    """Entries of an argparse help's argument sections that have no description."""
    lines, bad, listing = help_text.splitlines(), [], False
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            listing = line in ("options:", "positional arguments:")
        elif listing and re.match(r"  \S", line):
            name, *text = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            wrapped = i + 1 < len(lines) and lines[i + 1].startswith(" " * 6)
            if not text and not wrapped:
                bad.append(name)
    return bad
