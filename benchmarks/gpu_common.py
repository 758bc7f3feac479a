"""Shared pieces of ``benchmarks/gpu_check.py``: sizes, section clock, timing, GPU busy sampling.

The check's sections (:mod:`gpu_extract`, :mod:`gpu_train`, :mod:`gpu_infer`) record their
figures as :class:`Row` lists in a section dict that ``gpu_check.py`` writes to the JSON file
and prints as the table. :class:`Sizes` holds the full-size settings (the paper's sizes on one
GPU) and the ``--dry-run`` ones (tiny, CPU, seconds). :class:`Clock` tells a section how much
of its time limit is left, so it measures what fits and records a reason for what it skips.
Imports here are the standard library and numpy only; torch is imported inside functions.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


@dataclass(frozen=True)
class Sizes:
    """What the check measures at: full size (``--dry-run`` replaces it with :func:`dry_sizes`)."""

    device: str = "cuda"
    short_side: int = 640  # stored frames (docs/design.md §3)
    batches: tuple[int, ...] = (1, 4, 8, 16)  # extraction batch sizes
    depth_sizes: tuple[str, ...] = ("small", "base", "large")
    pwcnet: str = "full"  # MMFlow's PWC-Net (9.37 M) | "tiny"
    model: str = "sd15"  # model.config preset
    height: int = 896
    width: int = 640
    stage1_batch: int = 4
    stage2_frames: int = 16
    train_steps: int = 3  # timed optimizer steps per measurement (after one warm-up)
    infer_frames: int = 16
    video_frames: int = 64
    window: int = 16
    stride: int = 8
    ddim_steps: int = 50
    guidance: float = 1.5
    repeats: int = 2  # timed runs after the warm-up (median)
    threads: int = 0  # CPU threads for torch and onnxruntime (0: every core)
    trainer: str = "auto"  # auto (DeepSpeed when it imports) | deepspeed | plain


def dry_sizes() -> Sizes:
    """Tiny sizes on the CPU: every code path of the check in seconds (figures meaningless)."""
    return Sizes(
        device="cpu",
        short_side=64,
        batches=(1, 2),
        depth_sizes=("tiny",),
        pwcnet="tiny",
        model="tiny",
        height=64,
        width=48,
        stage1_batch=2,
        stage2_frames=4,
        train_steps=1,
        infer_frames=4,
        video_frames=8,
        window=4,
        stride=2,
        ddim_steps=4,
        repeats=1,
        threads=1,  # a shared CPU: one thread avoids OpenMP spinning against other jobs
    )


@dataclass
class Row:
    """One figure of the table: ``value`` in ``unit`` (None with a ``note`` when not measured)."""

    item: str
    value: float | None
    unit: str
    batch: int | str = "-"
    device: str = "-"
    busy: float | None = None  # GPU busy fraction (NVML) while it ran
    peak_gib: float | None = None  # peak torch allocation
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Section:
    """A section's record: its budget, status (ok | partial | skipped | failed) and rows."""

    name: str
    budget_s: float
    what: str
    status: str = "pending"
    reason: str = ""
    wall_s: float = 0.0
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def skip_item(self, item: str, reason: str) -> None:
        """An item not measured, with its reason (it appears in the table and the JSON)."""
        self.rows.append(Row(item, None, "-", note=f"skipped: {reason}"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [r.to_dict() for r in self.rows]
        return d


class SkipSection(Exception):
    """Raised by a section that cannot run here; its message is the reason recorded."""


class Clock:
    """Time left of a section's limit; ``fits(seconds)`` before starting a measurement."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left()


def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, repeats: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    """Peak torch allocation since :func:`reset_peak`, GiB (None on the CPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / GIB, 2)


def total_gib(device: str) -> float | None:
    """The GPU's memory, GiB (None on the CPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_properties(0).total_memory / GIB


def free_memory(device: str) -> None:
    """Drop cached allocations between measurements."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch raises OutOfMemoryError, a RuntimeError)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Busy:
    """GPU busy fraction sampled through NVML in a thread while a ``with`` block runs.

    NVML's utilisation is the share of its last sample period (1/6 s to 1 s, by GPU) in which
    a kernel ran; the mean of samples taken every 20 ms is reported. ``value`` is None, with
    ``reason``, when NVML (nvidia-ml-py) or a GPU is missing."""

    def __init__(self, device: str, period_s: float = 0.02) -> None:
        self.device, self.period_s = device, period_s
        self.samples: list[int] = []
        self.reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None

    def __enter__(self) -> Busy:
        if not self.device.startswith("cuda"):
            self.reason = "no GPU"
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0)
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # no nvidia-ml-py, no driver, a MIG/UUID device list
            self.reason = f"NVML unavailable: {type(exc).__name__}: {exc}"
            return self
        self._thread = threading.Thread(target=self._run, args=(pynvml,), daemon=True)
        self._thread.start()
        return self

    def _run(self, pynvml: Any) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def value(self) -> float | None:
        if not self.samples:
            self.reason = self.reason or "no NVML sample (run too short)"
            return None
        return round(sum(self.samples) / len(self.samples) / 100, 3)


def gpu_info() -> dict[str, Any]:
    """The machine: GPU, driver, memory, CPU count, library versions."""
    import importlib.metadata
    import platform

    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpu_memory_gib": total_gib("cuda") if torch.cuda.is_available() else None,
    }
    for dist in (
        "diffusers",
        "transformers",
        "deepspeed",
        "onnx2torch",
        "onnxruntime",
        "omegaconf",
    ):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    try:
        import pynvml

        pynvml.nvmlInit()
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        info["driver"] = None
    return info
