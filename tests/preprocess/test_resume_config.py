"""Resuming an output written before a config option existed: the stored ``config.yaml`` is
compared with the missing keys at their defaults, so a new option left at its default does not
lock every older output; a changed value, or a stored key that no longer exists, is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from preprocess.config import PreprocessConfig
from preprocess.runner import ConfigMismatchError, check_same_config
from shards.config import config_to_dict
from shards.schema import with_format_version


def store(out: Path, config: dict) -> None:  # type: ignore[type-arg]
    (out / "config.yaml").write_text(yaml.safe_dump(with_format_version(config)))


def test_keys_added_since_the_output_was_written_take_their_defaults(tmp_path: Path) -> None:
    cfg = PreprocessConfig()
    old = config_to_dict(cfg)
    del old["pose"]["hand_model"], old["pose"]["box_sources"]  # options newer than the output
    store(tmp_path, old)
    check_same_config(tmp_path, cfg)  # resumes


def test_a_missing_key_with_another_value_now_is_refused(tmp_path: Path) -> None:
    cfg = PreprocessConfig()
    old = config_to_dict(cfg)
    del old["pose"]["box_sources"]
    store(tmp_path, old)
    changed = PreprocessConfig()
    changed.pose.box_sources = ["nanodet"]
    with pytest.raises(ConfigMismatchError, match=r"pose\.box_sources: \['nanodet', 'multipose'\]"):
        check_same_config(tmp_path, changed)


def test_a_key_that_no_longer_exists_is_a_difference(tmp_path: Path) -> None:
    cfg = PreprocessConfig()
    old = config_to_dict(cfg)
    old["pose"]["retired_option"] = 3
    store(tmp_path, old)
    with pytest.raises(ConfigMismatchError, match=r"pose\.retired_option: 3 -> None"):
        check_same_config(tmp_path, cfg)
