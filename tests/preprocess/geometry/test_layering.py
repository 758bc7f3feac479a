"""The geometry layer is pure: it imports nothing of the project but ``shards`` and itself, and
importing it pulls in no extractor, model, torch, Ray or video decoder (the data viewers and
``model/`` rely on both)."""

from __future__ import annotations

import ast
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
ALLOWED_THIRD_PARTY = {"numpy", "cv2", "scipy"}
HEAVY = ("torch", "onnxruntime", "ray", "decord", "av", "transformers", "diffusers", "deepspeed")


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_geometry_modules_import_only_numpy_opencv_scipy_shards_and_themselves() -> None:
    stdlib = sys.stdlib_module_names
    for path in sorted(PACKAGE.glob("*.py")):
        for name in _imported(path):
            top = name.split(".")[0]
            ours = name == "preprocess.geometry" or name.startswith(
                ("preprocess.geometry.", "shards")
            )
            assert top in stdlib or top in ALLOWED_THIRD_PARTY or ours, (
                f"{path.name} imports {name}"
            )


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
