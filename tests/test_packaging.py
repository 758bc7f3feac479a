"""The project's generic top-level package names must be ours, not shadowed or shadowing.

``model``, ``train``, ``preprocess`` and ``shards`` are common names; another installed
distribution providing one of them would silently replace ours (or be replaced) depending on
``sys.path`` order.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("preprocess", "shards", "model", "train")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_is_imported_from_this_checkout(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / name


def test_no_other_installed_distribution_provides_our_package_names() -> None:
    providers = importlib.metadata.packages_distributions()
    for name in PACKAGES:
        others = sorted(set(providers.get(name, [])) - {"mcanim"})
        assert not others, f"top-level package {name!r} is also installed by {others}"
