"""Importing the geometry layer pulls in no extractor, model, torch, Ray or video decoder (the
data viewers and ``model/`` rely on it). What it may import statically is checked with the
whole import contract in ``tests/test_layering.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import preprocess.geometry

PACKAGE = Path(preprocess.geometry.__file__).parent
ROOT = PACKAGE.parents[1]  # the repository: where ``preprocess`` is importable from
MODULES = sorted(
    f"preprocess.geometry.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"
)
HEAVY = ("torch", "onnxruntime", "ray", "decord", "av", "transformers", "diffusers", "deepspeed")


def test_importing_the_geometry_layer_loads_no_extractor_model_or_heavy_library() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = json.loads(out.stdout)
    assert set(MODULES) <= set(loaded)
    ours = [m for m in loaded if m.split(".")[0] in ("preprocess", "model", "train", "shards")]
    foreign = [m for m in ours if m != "preprocess" and not m.startswith("preprocess.geometry")]
    assert not foreign, f"the geometry layer pulls in {foreign}"
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert not heavy, f"the geometry layer pulls in {sorted({m.split('.')[0] for m in heavy})}"
