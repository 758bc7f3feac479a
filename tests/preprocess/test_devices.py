"""Device and dtype selection (``*.device``, ``--dtype``): auto | cpu | cuda | cuda:N, checked
against this machine; every backend's use of it is in test_backends.py."""

from __future__ import annotations

import cv2
import onnxruntime as ort
import pytest
import torch

from preprocess.devices import (
    DTYPES,
    apply_cpu_threads,
    onnx_providers,
    resolve_device,
    torch_device,
    torch_dtype,
)


def test_auto_and_cpu_resolve_to_what_is_present() -> None:
    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    cuda_ort = "CUDAExecutionProvider" in ort.get_available_providers()
    assert (onnx_providers("auto")[0] != "CPUExecutionProvider") == cuda_ort


def test_bad_or_absent_devices_are_errors() -> None:
    with pytest.raises(ValueError, match="device='gpu' is not a device"):
        torch_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            torch_device("cuda:1")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
            onnx_providers("cuda")


def test_errors_name_the_config_key() -> None:
    with pytest.raises(ValueError, match=r"flow\.device='gpu' is not a device"):
        resolve_device("gpu", "torch", "flow.device")
    with pytest.raises(ValueError, match=r"depth\.device='cuda:1' but heuristic runs on the CPU"):
        resolve_device("cuda:1", "cpu", "depth.device", "heuristic")
    assert resolve_device(" AUTO ", "cpu", "flow.device") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"depth\.device='cuda'.*torch sees no CUDA GPU"):
            resolve_device("cuda", "torch", "depth.device")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match=r"pose\.device='cuda'.*no CUDAExecutionProvider"):
            resolve_device("cuda", "onnx", "pose.device")
    with pytest.raises(ValueError, match="unknown runtime"):
        resolve_device("cpu", "tensorflow")


def test_torch_dtype_auto_is_bfloat16_on_cuda_only() -> None:
    assert DTYPES == ("float32", "float16", "bfloat16")
    assert torch_dtype("auto", "cpu") is torch.float32
    assert torch_dtype("auto", "cuda") is torch.bfloat16  # a name: no GPU needed to resolve it
    assert torch_dtype("auto", torch.device("cuda", 1)) is torch.bfloat16
    assert torch_dtype("auto", torch.device("cpu")) is torch.float32
    assert [torch_dtype(n, "cuda") for n in DTYPES] == [
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ]
    with pytest.raises(ValueError, match="'fp16' is not one of auto, float32"):
        torch_dtype("fp16", "cpu")


def test_opencv_runs_on_the_workers_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-CPU Ray worker (OMP_NUM_THREADS=1, set by Ray) runs OpenCV on one thread, which
    OpenCV would not do by itself; without OMP_NUM_THREADS OpenCV keeps its own choice."""
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        apply_cpu_threads()
        assert cv2.getNumThreads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        apply_cpu_threads()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
