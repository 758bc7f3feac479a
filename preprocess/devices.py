"""Device and dtype selection: ``auto`` | ``cpu`` | ``cuda`` (``cuda:N``), for every model runtime.

Every extractor backend resolves its config's ``device`` here (through
:class:`preprocess.backends.Backend`) and keeps the result as ``.device``; the model
entry points (``model.animate``, ``model.init``, training) take their dtypes from
:func:`torch_dtype`. Asking for a GPU that is not there is an error naming the config key,
never a silent CPU run. torch and onnxruntime are imported inside the functions, so importing
this module stays light.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RUNTIMES = ("cpu", "torch", "onnx")
"""Where a backend's work runs: plain CPU code (no GPU path), PyTorch, or onnxruntime."""
DTYPES = ("float32", "float16", "bfloat16")
"""dtype names a config may give (besides ``auto``); :func:`torch_dtype` turns them into torch's."""

_CHOICES = "use auto, cpu, cuda or cuda:N"


def cpu_threads() -> int:
    """Threads of the CPU codecs (the decoder, x264): ``OMP_NUM_THREADS`` when set, else 0
    (the codec's choice). Ray sets it in every task to the CPUs the task holds, so a decode
    task decodes and encodes on one thread, the cheapest per frame (measured on the dance
    video at 640x1138: decord 10.5 ms per frame on one thread against 12.3 on ffmpeg's
    choice, x264 ultrafast 3.9 against 4.5), while the in-process run lets them thread.
    Threads change the speed, never the frames."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


def apply_cpu_threads() -> None:
    """Size OpenCV's thread pool like the codecs (:func:`cpu_threads`): one thread in a
    one-CPU Ray task or actor; left alone when ``OMP_NUM_THREADS`` is unset (the in-process
    run). OpenCV ignores ``OMP_NUM_THREADS`` and would run every call (DIS flow, resizes,
    dilations) on all the machine's cores, while the other workers hold them too: measured on
    the corpus of ``benchmarks/corpus.py`` with the codecs on one thread, the flow stage cost
    7.3 CPU ms per frame with OpenCV's two threads on 2 cores against 5.4 on one. Threads
    change the speed, never the result."""
    threads = cpu_threads()
    if threads:
        import cv2

        if cv2.getNumThreads() != threads:
            cv2.setNumThreads(threads)


def check_device(device: str, key: str = "device") -> str:
    """``device`` normalised (stripped, lower case), or a ValueError naming ``key``."""
    device = device.strip().lower()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"{key}={device!r} is not a device; {_CHOICES}")
    return device


def cpu_device(device: str, key: str = "device", what: str = "this backend") -> str:
    """``cpu`` for ``auto``/``cpu``; a ValueError for a GPU, since ``what`` has no GPU path."""
    device = check_device(device, key)
    if device.startswith("cuda"):
        raise ValueError(f"{key}={device!r} but {what} runs on the CPU only; set {key}=cpu or auto")
    return "cpu"


def torch_device(device: str, key: str = "device") -> str:
    """The torch device for ``device``: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``.

    Asking for ``cuda`` on a machine without one is an error, not a silent CPU run."""
    import torch

    device = check_device(device, key)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{key}={device!r} but torch sees no CUDA GPU; use cpu or auto")
    return device


GPU_INSTALL = (
    "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'mcanim[gpu]' (docs/gpu.md)"
)
"""The fix for an onnxruntime without its CUDA provider: the CPU build (``onnxruntime``, the
``cpu`` extra) and the GPU build (``onnxruntime-gpu``, the ``gpu`` extra) install the same
``onnxruntime`` package and overwrite each other, so the GPU build goes in its place."""


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an ImportError naming the extras that install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            f"onnxruntime is not installed ({exc}): pip install 'mcanim[cpu]', or "
            "'mcanim[gpu]' for its CUDA build (docs/gpu.md)"
        ) from exc
    return onnxruntime


def onnxruntime_builds() -> list[str]:
    """The onnxruntime distributions installed (more than one: they overwrite each other)."""
    import importlib.metadata

    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def missing_cuda_provider(available: list[str]) -> str:
    """Why onnxruntime has no CUDA provider here, and the fix."""
    builds = onnxruntime_builds()
    which = " and ".join(builds) or "no onnxruntime distribution"
    clash = " (they overwrite each other)" if len(builds) > 1 else ""
    return (
        f"onnxruntime has no CUDAExecutionProvider (available: {', '.join(available)}; "
        f"installed: {which}{clash}); install its GPU build in place of the CPU one: "
        f"{GPU_INSTALL}"
    )


def onnx_device(device: str, key: str = "device") -> str:
    """The device onnxruntime will be asked for: ``auto`` is ``cuda`` when onnxruntime has its
    CUDA execution provider (``onnxruntime-gpu``), else ``cpu``; ``cuda`` without it is an error
    that names the fix (:data:`GPU_INSTALL`)."""
    ort = import_onnxruntime()

    device = check_device(device, key)
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device.startswith("cuda") and not has_cuda:
        raise ValueError(f"{key}={device!r} but {missing_cuda_provider(available)}; or use cpu")
    return device


def onnx_providers(device: str, key: str = "device") -> list[str | tuple[str, dict[str, str]]]:
    """onnxruntime execution providers for ``device`` (CUDA first when wanted and present)."""
    device = onnx_device(device, key)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = device.split(":", 1)[1] if ":" in device else "0"
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def resolve_device(device: str, runtime: str, key: str = "device", what: str = "") -> str:
    """``device`` resolved for a backend of ``runtime`` (one of :data:`RUNTIMES`)."""
    if runtime == "torch":
        return torch_device(device, key)
    if runtime == "onnx":
        return onnx_device(device, key)
    if runtime == "cpu":
        return cpu_device(device, key, what or "this backend")
    raise ValueError(f"unknown runtime {runtime!r}; one of {RUNTIMES}")


def onnx_session(path: str | Path, device: str, threads: int, key: str = "device") -> Any:
    """An onnxruntime session on ``device`` (see :func:`onnx_session_options` for ``threads``):
    the one place the project creates ONNX sessions.

    ``cuda`` without onnxruntime's CUDA provider is an error naming the fix (the CPU build is
    installed: :data:`GPU_INSTALL`); ``auto`` then runs on the CPU, with a warning at every
    session when torch sees a GPU that onnxruntime cannot use. onnxruntime also quietly falls
    back to the CPU when its CUDA provider cannot start (missing CUDA libraries); an explicitly
    asked GPU then is an error, ``auto`` a warning. The session's device is
    :func:`session_device`."""
    ort = import_onnxruntime()

    session = ort.InferenceSession(
        str(path), sess_options=onnx_session_options(threads), providers=onnx_providers(device, key)
    )
    wanted = onnx_device(device, key)
    if wanted != "cpu" and session_device(session) == "cpu":
        message = f"{key}={device!r}: onnxruntime could not start CUDA for {path}"
        if check_device(device, key) != "auto":
            raise ValueError(f"{message}; fix the CUDA install or use cpu")
        log.warning("%s; running on the CPU", message)
    elif wanted == "cpu" and check_device(device, key) == "auto" and torch_sees_gpu():
        log.warning(
            "%s=auto runs %s on the CPU although there is a GPU: %s",
            key,
            Path(path).name,
            missing_cuda_provider(ort.get_available_providers()),
        )
    return session


def torch_sees_gpu() -> bool:
    """True when torch sees a CUDA GPU (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def session_device(session: Any) -> str:
    """``cuda:N`` when an onnxruntime session runs on its CUDA provider, else ``cpu``."""
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return "cpu"
    options = session.get_provider_options().get("CUDAExecutionProvider", {})
    return f"cuda:{options.get('device_id', '0')}"


def onnx_session_options(threads: int) -> Any:
    """onnxruntime session options: ``threads`` intra-op threads (0: its default), no spinning.

    Idle onnxruntime threads spin by default, which costs nothing when the session has the
    CPU to itself but steals it from the stages that share the cores in a pipeline (in the Ray
    job on 2 cores, the pose actor used 85 CPU-seconds for 512 frames with spinning and 56
    without, at the same speed when run alone).
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def torch_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """The torch dtype of ``name`` (:data:`DTYPES` or ``auto``: bfloat16 on CUDA, else float32)."""
    import torch

    if name == "auto":
        kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
        return torch.bfloat16 if kind == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of auto, {', '.join(DTYPES)}")
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
