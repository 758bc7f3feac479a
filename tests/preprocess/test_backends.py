"""One backend shape for pose, flow and depth: registry, ``.device``, ``identity()``, imports.

Every registered backend is built here on this machine's devices (the model backends on tiny
stand-in weights with the real file layouts, MoveNet on the real model): ``cpu`` and ``auto``
resolve to where it really runs, a GPU that is not there is an error naming the config key.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from preprocess.backends import Backend, Registry
from preprocess.config import DepthConfig, FlowConfig, PoseConfig
from preprocess.depth import DEPTH_BACKENDS, DepthBackend
from preprocess.flow import FLOW_BACKENDS, FlowBackend
from preprocess.pose import POSE_BACKENDS, PoseBackend
from preprocess.standins import (
    TINY_PWCNET,
    planted_head,
    write_depth_anything,
    write_dwpose_onnx,
    write_pwcnet_checkpoint,
    write_yolox_onnx,
)

REPO = Path(__file__).resolve().parents[2]
REGISTRIES: dict[str, Registry[Any]] = {
    "pose": POSE_BACKENDS,
    "flow": FLOW_BACKENDS,
    "depth": DEPTH_BACKENDS,
}
RUNTIMES = {  # where each backend may run: cpu = plain CPU code, cuda is an error
    ("pose", "movenet"): "onnx",
    ("pose", "dwpose"): "onnx",
    ("pose", "topdown"): "onnx",
    ("pose", "precomputed"): "cpu",
    ("flow", "dis"): "cpu",
    ("flow", "pwcnet"): "torch",
    ("depth", "heuristic"): "cpu",
    ("depth", "depth_anything"): "torch",
}
BACKENDS = list(RUNTIMES)


@pytest.fixture(scope="module")
def weights(
    tmp_path_factory: pytest.TempPathFactory, movenet_onnx: Path, assets: Path
) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("backends")
    return {
        "movenet": movenet_onnx,
        "topdown": assets / "models" / "movenet_thunder.onnx",
        "nanodet": assets / "models" / "nanodet_m_416.onnx",
        "yolox": write_yolox_onnx(d / "yolox_l.onnx", planted_head((640, 640), [])),
        "dwpose": write_dwpose_onnx(d / "dw-ll_ucoco_384.onnx"),
        "pwcnet": write_pwcnet_checkpoint(d / "pwcnet.pth", TINY_PWCNET),
        "depth_anything": write_depth_anything(d / "depth-anything-small-hf"),
    }


def config(kind: str, name: str, weights: dict[str, Path], device: str) -> Any:
    if kind == "pose":
        detectors = {"dwpose": str(weights["yolox"]), "topdown": str(weights["nanodet"])}
        return PoseConfig(
            backend=name,
            model=str(weights.get(name, "")),
            detector=detectors.get(name, ""),
            box_sources=["nanodet"],  # topdown: NanoDet boxes only (no MultiPose path given)
            device=device,
        )
    if kind == "flow":
        return FlowConfig(backend=name, weights=str(weights.get(name, "")), device=device)
    return DepthConfig(backend=name, model=str(weights.get(name, "")), device=device)


def gpu_available(runtime: str) -> bool:
    if runtime == "torch":
        return torch.cuda.is_available()
    if runtime == "onnx":
        return "CUDAExecutionProvider" in ort.get_available_providers()
    return False


def runs_on(backend: Backend[Any]) -> str:
    """Where the backend's model really is: 'cpu' or 'cuda' (no model: its ``device``)."""
    sessions = {"movenet": "session", "dwpose": "pose", "topdown": "pose"}
    if backend.name in sessions:
        session = getattr(backend, sessions[backend.name])
        session = getattr(session, "session", session)
        return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    if backend.name in ("pwcnet", "depth_anything"):
        return next(backend.net.parameters()).device.type  # type: ignore[attr-defined]
    return backend.device


def test_every_registered_backend_is_covered_here() -> None:
    registered = {(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()}
    assert registered == set(BACKENDS)  # a new backend joins the device and identity checks


@pytest.mark.parametrize(("kind", "name"), BACKENDS)
def test_device_is_resolved_and_a_missing_gpu_is_an_error(
    kind: str, name: str, weights: dict[str, Path]
) -> None:
    runtime = RUNTIMES[kind, name]
    assert REGISTRIES[kind].get(name).runtime == runtime
    gpu = gpu_available(runtime)
    cpu = REGISTRIES[kind].create(config(kind, name, weights, "cpu"))
    assert cpu.device == "cpu" and runs_on(cpu) == "cpu"
    auto = REGISTRIES[kind].create(config(kind, name, weights, "auto"))
    assert auto.device.startswith("cuda") == gpu
    assert runs_on(auto) == auto.device.split(":")[0]
    if gpu:
        assert REGISTRIES[kind].create(config(kind, name, weights, "cuda")).device != "cpu"
        return
    expected = "runs on the CPU only" if runtime == "cpu" else "CUDA"
    with pytest.raises(ValueError, match=rf"{kind}\.device='cuda'.*{expected}"):
        REGISTRIES[kind].create(config(kind, name, weights, "cuda"))
    with pytest.raises(ValueError, match=rf"{kind}\.device='gpu' is not a device"):
        REGISTRIES[kind].create(config(kind, name, weights, "gpu"))


@pytest.mark.parametrize("name", ["movenet", "dwpose", "topdown"])
def test_onnx_backends_never_fall_back_to_the_cpu_silently(
    name: str,
    weights: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """onnxruntime starts a CPU session when its CUDA provider cannot start; here it is
    listed as available but cannot start (this build has no CUDA)."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime has a working CUDA provider here")
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with pytest.raises(ValueError, match=r"pose\.device='cuda'.*could not start CUDA"):
        POSE_BACKENDS.create(config("pose", name, weights, "cuda"))
    with caplog.at_level(logging.WARNING, "preprocess.devices"):
        auto = POSE_BACKENDS.create(config("pose", name, weights, "auto"))
    assert auto.device == "cpu" and "running on the CPU" in caplog.text


@pytest.mark.parametrize(("kind", "name"), BACKENDS)
def test_identity_has_one_structure(kind: str, name: str, weights: dict[str, Path]) -> None:
    backend = REGISTRIES[kind].create(config(kind, name, weights, "cpu"))
    ident = backend.identity()
    assert list(ident)[:3] == ["name", "model", "sha256"] and ident["name"] == name
    assert json.loads(json.dumps(ident)) == ident  # goes into backends.json as it is
    assert isinstance(
        backend, {"pose": PoseBackend, "flow": FlowBackend, "depth": DepthBackend}[kind]
    )


def test_identities_are_those_recorded_by_earlier_outputs(weights: dict[str, Path]) -> None:
    """Resume compares identities: the re-layout must not change a single one."""
    dis = FLOW_BACKENDS.create(FlowConfig(preset="fast")).identity()
    assert dis == {"name": "dis", "model": "", "sha256": None, "preset": "fast"}
    heuristic = DEPTH_BACKENDS.create(DepthConfig()).identity()
    assert heuristic == {
        "name": "heuristic",
        "model": "",
        "sha256": None,
        "rule": "lowest confident keypoint is nearest",
    }
    pre = POSE_BACKENDS.create(PoseConfig(backend="precomputed")).identity()
    assert pre == {
        "name": "precomputed",
        "model": "",
        "sha256": None,
        "sidecar_suffix": ".pose.npz",
    }
    dw = POSE_BACKENDS.create(config("pose", "dwpose", weights, "cpu")).identity()
    assert dw["model"] == str(weights["dwpose"].resolve()) and len(str(dw["sha256"])) == 64
    detector = dw["detector"]
    assert isinstance(detector, dict) and detector["name"] == "yolox"
    assert detector["model"] == str(weights["yolox"].resolve())
    da = DEPTH_BACKENDS.create(config("depth", "depth_anything", weights, "cpu")).identity()
    assert list(da) == ["name", "model", "sha256", "hub_id", "weights_sha256"]
    assert da["model"] == str(weights["depth_anything"].resolve()) and da["sha256"] is None
    assert da["hub_id"] is None and len(str(da["weights_sha256"])) == 64


class _Flat(FlowBackend):
    name = "flat"

    def pair_flow(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return np.zeros((*current.shape[:2], 2), np.float32)


def test_registries_share_one_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FLOW_BACKENDS, "_classes", dict(FLOW_BACKENDS._classes))
    FLOW_BACKENDS.register("flat")(_Flat)
    backend = FLOW_BACKENDS.create(FlowConfig(backend="flat"))
    assert isinstance(backend, _Flat) and backend.device == "cpu"
    assert backend.identity() == {"name": "flat", "model": "", "sha256": None}
    with pytest.raises(ValueError, match="registered twice"):
        FLOW_BACKENDS.register("flat")(_Flat)
    with pytest.raises(ValueError, match="cannot register as depth backend 'flat'"):
        DEPTH_BACKENDS.register("flat")(_Flat)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot register as flow backend 'other'"):
        FLOW_BACKENDS.register("other")(_Flat)
    for kind, registry in REGISTRIES.items():
        with pytest.raises(ValueError, match=rf"unknown {kind} backend 'nope'.*available: "):
            registry.get("nope")


def test_importing_the_backend_packages_stays_light() -> None:
    code = (
        "import sys\n"
        "import preprocess.pose, preprocess.flow, preprocess.depth, preprocess.backends\n"
        "import preprocess.devices, preprocess.weights\n"
        "heavy = ('torch', 'onnxruntime', 'transformers', 'safetensors')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
