"""The benchmark scripts users run (``benchmarks/*.py``) must not rot.

Every script stands alone: it imports the installed packages only (no ``sys.path`` edits, no
``tests`` helpers) and is not named like one of our packages (a script's folder comes first on
``sys.path``, so ``benchmarks/model.py`` would shadow the package ``model``). Each script's
``--help`` runs, and the scripts with a ``--quick`` smoke mode run it as users launch them
(``python benchmarks/X.py``, from another working directory). Figures are not checked here:
they are the benchmarks' output, not a property of the code.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))
PACKAGES = {"preprocess", "shards", "model", "train", "tests"}
HELP = ["extractors.py", "denoising.py", "loader.py", "browse.py", "mutation.py", "encoder.py"]
HELP += ["corpus.py", "pose_quality.py", "gpu_check.py"]
QUICK = {  # script -> lines its --quick run must print
    "extractors.py": [
        "| flow dis (medium) |",
        "| flow pwcnet | stand-in |",
        "| depth depth_anything",
    ],
    "denoising.py": ["denoising step (CFG = 2 UNet evaluations", "VAE decode of the window"],
    "pose_quality.py": ["| movenet | ", "| topdown | ", "load average after"],
    "encoder.py": ["| medium | ", "CPU ms per stored frame (mp4"],
    "corpus.py": ["pipeline efficiency", "per stored frame: driver CPU", "MiB  driver"],
}


def sys_path_edits_and_test_imports(tree: ast.Module) -> list[str]:
    """``sys.path`` mutations and imports of ``tests`` in a module, as source snippets."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node).startswith("sys.path."):
            found.append(ast.unparse(node))  # sys.path.insert / .append / ...
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "tests"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tests":
            found.append(f"from {node.module}")
    return found


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_stands_alone(script: str) -> None:
    assert Path(script).stem not in PACKAGES, f"{script} would shadow our package when run"
    tree = ast.parse((BENCHMARKS / script).read_text(), script)
    assert not sys_path_edits_and_test_imports(tree), script


def test_the_scripts_are_all_known() -> None:
    assert set(HELP) | set(QUICK) <= set(SCRIPTS)


@pytest.mark.parametrize("script", HELP)
def test_help(
    script: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{Path(script).stem}", BENCHMARKS / script
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/X.py`: siblings import
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("script", sorted(QUICK))
def test_quick_run(script: str, tmp_path: Path, assets: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        cwd=tmp_path,  # not the repository: the script finds its imports installed
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    for line in QUICK[script]:
        assert line in run.stdout, (line, run.stdout)
