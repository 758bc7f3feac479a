"""Shared fixtures. Real assets come from MCANIM_ASSETS (default ../shared/assets).

Tests that need them fail (never skip) when the folder is missing: CI must not go green
without having looked at real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def assets_dir() -> Path:
    env = os.environ.get("MCANIM_ASSETS")
    path = Path(env) if env else REPO.parent / "shared" / "assets"
    if not (path / "README.md").is_file():
        raise FileNotFoundError(
            f"test assets not found at {path}: set MCANIM_ASSETS to the shared assets folder "
            "(videos/vtest.avi, models/movenet_multipose.onnx, images/coco_wholebody/...)"
        )
    return path


@pytest.fixture(scope="session")
def assets() -> Path:
    return assets_dir()


@pytest.fixture(scope="session")
def vtest(assets: Path) -> Path:
    return assets / "videos" / "vtest.avi"


@pytest.fixture(scope="session")
def dance(assets: Path) -> Path:
    return assets / "videos" / "dance_single.mp4"


@pytest.fixture(scope="session")
def movenet_onnx(assets: Path) -> Path:
    return assets / "models" / "movenet_multipose.onnx"
