"""The one config/CLI mechanism (config.py): docstring help, precedence, clear errors."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from preprocess.config import PreprocessConfig
from shards.config import (
    ConfigCLI,
    ConfigError,
    describe_keys,
    field_docs,
    format_keys,
    load_config,
)


@dataclass
class Sampling:
    """How frames are sampled."""

    steps: int = 50
    """DDIM steps per frame window."""
    guidance_scale: float = 3.5
    """Classifier-free guidance weight."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds to run, one video each."""


@dataclass
class Job:
    """A test job."""

    out: str = ""
    """Output video (.mp4)."""
    dry_run: bool = False
    """Only print what would be done (100% safe)."""
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class LongJob(Job):
    retries: int = 2
    """Attempts per video."""


def cli_and_parser(**kwargs: Any) -> tuple[ConfigCLI[Job], argparse.ArgumentParser]:
    cli = ConfigCLI(Job, **kwargs)
    parser = cli.parser("python -m job", "Run a test job.")
    cli.flag(parser, "--out")
    cli.flag(parser, "--steps", key="sampling.steps")
    cli.flag(parser, "--seeds", key="sampling.seeds")
    cli.flag(parser, "--dry-run")
    return cli, parser


def test_field_docstrings_are_read_from_the_source() -> None:
    assert field_docs(Sampling)["steps"] == "DDIM steps per frame window."
    assert field_docs(LongJob)["out"] == "Output video (.mp4)."  # inherited
    assert field_docs(LongJob)["retries"] == "Attempts per video."
    keys = {k.key: k for k in describe_keys(Job)}
    assert list(keys) == [
        "out",
        "dry_run",
        "sampling",
        "sampling.steps",
        "sampling.guidance_scale",
        "sampling.seeds",
    ]
    assert keys["sampling"].group and keys["sampling"].doc == "How frames are sampled."
    assert (keys["sampling.seeds"].type_name, keys["sampling.seeds"].default) == ("list[int]", [0])


def test_help_explains_every_flag_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    _, parser = cli_and_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS DDIM steps per frame window. [sampling.steps; default 50]" in text
    assert "--dry-run, --no-dry-run Only print what would be done (100% safe)." in text
    assert "sampling.guidance_scale: float = 3.5 Classifier-free guidance weight." in text
    assert "sampling.* (Sampling) How frames are sampled." in text
    assert "--config YAML" in text and "KEY=VALUE" in text


def test_help_of_a_real_config_lists_nested_docstrings() -> None:
    text = " ".join(format_keys(PreprocessConfig).split())
    assert "decode.max_fps: float = 30.0 Frame-rate cap." in text
    described = [k for k in describe_keys(PreprocessConfig) if not k.group]
    assert described and all(k.doc for k in described), [k.key for k in described if not k.doc]


def test_precedence_defaults_yaml_flags_overrides(tmp_path: Path) -> None:
    preset = tmp_path / "job.yaml"
    preset.write_text("out: from_yaml.mp4\nsampling:\n  steps: 20\n  guidance_scale: 2.0\n")
    cli, parser = cli_and_parser()
    argv = ["--config", str(preset), "--steps", "10", "sampling.guidance_scale=1.5"]
    cfg = cli.config(parser.parse_args(argv))
    assert cfg == Job(out="from_yaml.mp4", sampling=Sampling(steps=10, guidance_scale=1.5))
    argv = ["--config", str(preset), "--steps", "10", "sampling.steps=5", "--seeds", "1,2"]
    cfg = cli.config(parser.parse_args(argv))
    assert cfg.sampling.steps == 5 and cfg.sampling.seeds == [1, 2]  # overrides beat flags
    cfg = cli.config(parser.parse_args(["--dry-run"]))
    assert cfg == Job(dry_run=True)  # defaults where nothing is given
    base = Job(out="base.mp4", sampling=Sampling(steps=7))
    cli, parser = cli_and_parser(base=base, preset="none")
    assert cli.config(parser.parse_args([])) == base
    assert load_config(Job, overrides=["sampling.steps=8"], base=base).sampling.steps == 8
    assert base.sampling.steps == 7  # not modified


def test_unknown_keys_are_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sampling\.stepz"):
        load_config(Job, None, ["sampling.stepz=3"])
    preset = tmp_path / "bad.yaml"
    preset.write_text("sampling:\n  nope: 1\n")
    with pytest.raises(ConfigError, match=r"sampling\.nope"):
        load_config(Job, preset)
    cli = ConfigCLI(Job)
    with pytest.raises(ValueError, match=r"'sampling\.nope' is not a key of Job"):
        cli.flag(cli.parser("p", "d"), "--nope", key="sampling.nope")


def test_wrong_types_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"sampling\.steps"):
        load_config(Job, None, ["sampling.steps=many"])
    with pytest.raises(ConfigError, match=r"sampling\.steps"):
        load_config(Job, None, values={"sampling.steps": "many"})
    _, parser = cli_and_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--steps", "many"])
    assert exc.value.code == 2
    assert "argument --steps: invalid int value: 'many'" in capsys.readouterr().err


def test_every_key_has_a_default_shown() -> None:
    @dataclass
    class Required:
        path: str
        level: int = 1

    keys = describe_keys(Required)
    assert [k.default for k in keys] == [dataclasses.MISSING, 1]
    assert "path: str = (required)" in format_keys(Required)
