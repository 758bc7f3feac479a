"""Fixtures of the shards tests: one small synthetic output written with ``shards/``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.shards.synthetic import write_output


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("out")
    write_output(root, [3, 5, 1, 2], max_clips=4)
    return root


@pytest.fixture
def copy(output: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(output, tmp_path / "out"))
