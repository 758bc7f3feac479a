"""Device selection (``*.device``): auto | cpu | cuda | cuda:N, checked against this machine."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from preprocess.devices import onnx_providers, torch_device


def test_auto_and_cpu_resolve_to_what_is_present() -> None:
    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    cuda_ort = "CUDAExecutionProvider" in ort.get_available_providers()
    assert (onnx_providers("auto")[0] != "CPUExecutionProvider") == cuda_ort


def test_bad_or_absent_devices_are_errors() -> None:
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        torch_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            torch_device("cuda:1")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
            onnx_providers("cuda")
