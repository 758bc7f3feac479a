"""The GPU install path (docs/gpu.md): onnxruntime's GPU build in place of the CPU one.

``onnxruntime`` (CPU) and ``onnxruntime-gpu`` install the same package and overwrite each other,
so no install may ask for both: the base dependencies name neither, the ``cpu`` extra (also
reached through ``dev``) the CPU build, the ``gpu`` extra the GPU build. Checked by expanding
the extras of pyproject.toml as pip does (self-references included). On this CPU-only machine
a real pose backend configured with ``pose.device=cuda`` must stop at its session with the fix
spelled out, and ``auto`` with a GPU that onnxruntime cannot use must warn at every session.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import onnxruntime as ort
import pytest
from packaging.requirements import Requirement

from preprocess import devices
from preprocess.config import PoseConfig
from preprocess.pose import create_pose_backend

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="this machine's onnxruntime has CUDA: the missing-provider paths cannot happen",
)


def requirements(extras: set[str]) -> set[str]:
    """Distribution names ``pip install 'mcanim[extras]'`` asks for (extras of mcanim expanded)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {Requirement(r).name for r in project["dependencies"]}
    todo, seen = set(extras), set()
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            req = Requirement(line)
            if req.name == project["name"]:
                todo |= req.extras - seen
            else:
                names.add(req.name)
    return names


def test_no_install_asks_for_both_onnxruntime_builds() -> None:
    assert not {"onnxruntime", "onnxruntime-gpu"} & requirements(set())
    gpu, cpu, dev = requirements({"gpu"}), requirements({"cpu"}), requirements({"dev"})
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime" in dev and "onnxruntime-gpu" not in dev  # make setup's install


def test_a_pose_backend_on_cuda_without_the_provider_names_the_fix(assets: Path) -> None:
    model = assets / "models" / "movenet_multipose.onnx"
    cfg = PoseConfig(backend="movenet", model=str(model), device="cuda")
    with pytest.raises(ValueError, match=r"pose\.device='cuda'.*no CUDAExecutionProvider") as err:
        create_pose_backend(cfg)
    message = str(err.value)
    assert "installed: onnxruntime)" in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'mcanim[gpu]'" in message
    with pytest.raises(ValueError, match=r"pose\.device='cuda:1'"):  # the session itself
        devices.onnx_session(model, "cuda:1", 1, "pose.device")


def test_both_builds_installed_is_called_a_clash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "onnxruntime_builds", lambda: ["onnxruntime", "onnxruntime-gpu"])
    with pytest.raises(ValueError, match="overwrite each other"):
        devices.onnx_providers("cuda", "pose.device")


def test_auto_warns_at_every_session_when_a_gpu_goes_unused(
    assets: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = assets / "models" / "movenet_thunder.onnx"
    caplog.set_level(logging.WARNING, logger=devices.__name__)
    devices.onnx_session(model, "auto", 1, "pose.device")
    assert not caplog.records  # no GPU here: nothing to warn about
    monkeypatch.setattr(devices, "torch_sees_gpu", lambda: True)
    for _ in range(2):
        session = devices.onnx_session(model, "auto", 1, "pose.device")
        assert devices.session_device(session) == "cpu"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert (
        "pose.device=auto runs movenet_thunder.onnx on the CPU although there is a GPU"
        in (warnings[0])
    )
    assert "pip install 'mcanim[gpu]'" in warnings[0]


def test_without_onnxruntime_the_error_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install 'mcanim\[cpu\]', or 'mcanim\[gpu\]'"):
        devices.onnx_providers("cpu")
