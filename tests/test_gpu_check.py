"""``benchmarks/gpu_check.py`` must not rot before a GPU is lent (docs/gpu.md).

Its ``--dry-run`` (tiny sizes, CPU) runs here as on the GPU machine: ``python
benchmarks/gpu_check.py`` from another directory with the project on ``PYTHONPATH``, and with
Ray, decord, PyAV and WebDataset made unimportable (a ``sitecustomize`` sets their
``sys.modules`` entries to None in the check and in its child processes), since that machine
has none of them. The JSON must hold every section with a figure or the reason it has none.
Figures are not checked: they are the check's output. A run with a total too short for any
section shows the skip path: every section is skipped with the reason, nothing runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
ABSENT_ON_THE_GPU_MACHINE = ("ray", "decord", "av", "webdataset")
SECTIONS = {
    "extract.flow_pwcnet",
    "extract.depth_anything",
    "extract.pose_onnx2torch",
    "extract.pose_onnxruntime",
    "extract.fused",
    "train.stage1",
    "train.stage2",
    "infer.cfg_step",
}


def blocked_env(tmp_path: Path, assets: Path) -> dict[str, str]:
    """The environment of a check that cannot import :data:`ABSENT_ON_THE_GPU_MACHINE`."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {ABSENT_ON_THE_GPU_MACHINE!r}:\n"
        "    sys.modules[name] = None  # import raises ModuleNotFoundError\n"
    )
    path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "MCANIM_ASSETS": str(assets)}


def run_check(tmp_path: Path, assets: Path, *args: str, timeout: float) -> dict:
    out = tmp_path / "check.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), *args],
        cwd=tmp_path,
        env=blocked_env(tmp_path, assets),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "| section | item |" in run.stdout
    assert out.with_suffix(".md").is_file()
    return json.loads(out.read_text())


@pytest.mark.timeout(400)
def test_dry_run_reports_every_section(tmp_path: Path, assets: Path) -> None:
    result = run_check(tmp_path, assets, timeout=380)
    assert result["dry_run"] is True
    sections = result["sections"]
    assert set(sections) == SECTIONS
    for name, sec in sections.items():
        figures = [r["value"] for r in sec["rows"] if r["value"] is not None]
        if sec["status"] in ("ok", "partial"):
            assert figures, (name, sec)
            assert all(isinstance(v, int | float) and v > 0 for v in figures), (name, sec)
        else:
            assert sec["status"] in ("skipped", "failed") and sec["reason"], (name, sec)
    # what runs on the CPU must run here: only onnx2torch (not in the venv) may be missing
    for name in SECTIONS - {"extract.pose_onnx2torch"}:
        assert sections[name]["status"] == "ok", (name, sections[name])
    assert sections["train.stage1"]["notes"][0].startswith("deepspeed zero2 bf16")  # the venv's
    # the fused extractors themselves, not the sequential fallback, even without decord / PyAV
    assert [r["item"] for r in sections["extract.fused"]["rows"]] == ["fused extractors"]


def test_a_section_that_would_not_fit_is_skipped_with_the_reason(
    tmp_path: Path, assets: Path
) -> None:
    result = run_check(
        tmp_path, assets, "--total", "20", "--budget", "infer.cfg_step=30", timeout=120
    )
    for name, sec in result["sections"].items():
        assert sec["status"] == "skipped", (name, sec)
        assert sec["reason"].startswith("would not fit: needs"), (name, sec)
        assert not sec["rows"]
    assert result["sections"]["infer.cfg_step"]["budget_s"] == 30


def test_help_lists_every_section_with_its_limit(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(run.stdout.split())
    assert text.startswith("usage:")
    for name in SECTIONS:
        assert f"{name} " in text, name
    for option in ("--dry-run", "--total", "--budget", "--only", "--assets", "--trainer", "--out"):
        assert option in text, option


def test_the_script_refuses_unknown_sections(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "extract.nothing"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    assert "unknown section(s) ['extract.nothing']" in run.stderr
