"""Device selection for the model backends: ``auto`` | ``cpu`` | ``cuda`` (``cuda:N``).

torch and onnxruntime are imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

from typing import Any

_CHOICES = "use auto, cpu, cuda or cuda:N"


def _check(device: str) -> str:
    device = device.strip().lower()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r} is not a device; {_CHOICES}")
    return device


def torch_device(device: str) -> str:
    """The torch device for ``device``: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``.

    Asking for ``cuda`` on a machine without one is an error, not a silent CPU run."""
    import torch

    device = _check(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA GPU; use cpu or auto")
    return device


def onnx_providers(device: str) -> list[str | tuple[str, dict[str, str]]]:
    """onnxruntime execution providers for ``device`` (CUDA first when wanted and present)."""
    import onnxruntime as ort

    device = _check(device)
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cpu" or (device == "auto" and not has_cuda):
        return ["CPUExecutionProvider"]
    if not has_cuda:
        raise ValueError(
            f"device={device!r} but onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use cpu"
        )
    index = device.split(":", 1)[1] if ":" in device else "0"
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def onnx_session_options(threads: int) -> Any:
    """onnxruntime session options: ``threads`` intra-op threads (0: its default), no spinning.

    Idle onnxruntime threads spin by default, which costs nothing when the session has the
    CPU to itself but steals it from the stages that share the cores in a pipeline (in the Ray
    job on 2 cores, the pose actor used 85 CPU-seconds for 512 frames with spinning and 56
    without, at the same speed when run alone).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
