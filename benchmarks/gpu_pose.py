"""Pose sections of ``benchmarks/gpu_check.py`` (called through :mod:`gpu_extract`).

- ``extract.pose_onnx2torch``: the shared assets' ONNX pose models converted by ``onnx2torch``
  and run by torch on the device (onnxruntime on the GPU machine has no CUDA provider), per
  batch the graph allows; a graph that does not convert or run is a row with the reason.
- ``extract.pose_onnxruntime``: the same graphs through onnxruntime on the CPU cores, and the
  MoveNet backend (``pose.backend=movenet``) on the frames.

Also :func:`stand_in_modules`, which lets onnx2torch and ``preprocess.fused`` import where a
module they need only at import time is missing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gpu_common import (
    Busy,
    Clock,
    Row,
    Section,
    Sizes,
    SkipSection,
    free_memory,
    peak_gib,
    reset_peak,
    timed,
)

if TYPE_CHECKING:
    from gpu_extract import Env

POSE_GRAPHS = ("movenet_multipose", "movenet_thunder", "nanodet_m_416", "hand_landmark_full")
"""The shared assets' ONNX models (``ASSETS/models/NAME.onnx``) timed when present."""


# ---- pose -----------------------------------------------------------------------------------
def _absent(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is None
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


@contextmanager
def stand_in_modules(*names: str) -> Iterator[list[str]]:
    """Stand-ins for the absent ``names`` (dotted submodules included) while a ``with`` block
    imports something that needs them only at import time; removed afterwards (an entry that
    was None, i.e. blocked, is None again). Every attribute of a stand-in is a class that
    raises NotImplementedError when called and can sit in an ``except`` clause. Yields the
    names it stood in for.

    Used for onnx2torch, which imports torchvision only for its NonMaxSuppression and RoiAlign
    converters (this project never installs torchvision, /work/shared/DEPENDENCIES.md), and for
    ``preprocess.fused``, whose stage table imports the video decoders (decord, PyAV) that the
    GPU machine lacks and that a run on in-memory frames never calls."""
    missing = [n for n in names if _absent(n)]
    saved = {n: sys.modules.get(n, False) for n in missing}

    def attribute(module: str) -> Any:
        def get(attr: str) -> type:
            if attr.startswith("__"):  # __file__, __path__, ...: a plain module has none
                raise AttributeError(attr)

            def refuse(cls: type, *args: object, **kwargs: object) -> None:
                raise NotImplementedError(f"{module}.{attr}: {module} is not installed")

            return type(attr, (Exception,), {"__new__": refuse})

        return get

    for name in missing:
        stub = types.ModuleType(name)
        stub.__getattr__ = attribute(name)  # type: ignore[method-assign]
        sys.modules[name] = stub
        parent, _, child = name.rpartition(".")
        if parent in missing:
            setattr(sys.modules[parent], child, stub)
    try:
        yield missing
    finally:
        for name, before in saved.items():
            if before is False:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = before  # type: ignore[assignment]


def graph_input(
    path: Path, frames: np.ndarray, batch: int, fixed_batch: bool = True
) -> tuple[str, np.ndarray] | str:
    """(input name, an input of ``batch``) for an ONNX file, or why that batch cannot run
    (``fixed_batch``: a batch dimension of 1 in the graph allows no other; onnxruntime checks
    it, a converted torch module may run any batch, which the caller checks on the outputs)."""
    import onnx

    from preprocess.pose.movenet import prepare_frame

    graph = onnx.load(str(path), load_external_data=False).graph
    tensor = graph.input[0]
    dims = [d.dim_value or d.dim_param for d in tensor.type.tensor_type.shape.dim]
    if fixed_batch and dims[0] == 1 and batch != 1:
        return "the graph's batch dimension is fixed at 1"
    dtype = np.int32 if tensor.type.tensor_type.elem_type == onnx.TensorProto.INT32 else np.float32
    if any(isinstance(d, str) for d in dims[1:]):  # MoveNet MultiPose: any multiple of 32
        one = prepare_frame(frames[0], 512)  # (1, Hp, Wp, 3) as the movenet backend feeds it
    else:
        one = np.random.default_rng(0).uniform(0, 255, [1, *dims[1:]]).astype(dtype)
    return tensor.name, np.repeat(one.astype(dtype), batch, axis=0)


def pose_graphs(env: Env) -> list[Path]:
    return [p for n in POSE_GRAPHS if (p := env.assets / "models" / f"{n}.onnx").is_file()]


def pose_onnx2torch(sec: Section, sizes: Sizes, clock: Clock, env: Env) -> None:
    import torch

    dev = sizes.device
    graphs = pose_graphs(env)
    if not graphs:
        raise SkipSection(f"no ONNX pose model in {env.assets / 'models'} (docs/gpu.md: carry)")
    try:
        with stand_in_modules("torchvision", "torchvision.ops"):
            import onnx2torch
    except ImportError as exc:
        raise SkipSection(f"onnx2torch not importable ({exc}); make gpu-wheels") from None
    for path in graphs:
        name = path.stem
        try:
            net = onnx2torch.convert(str(path)).to(dev).eval()
        except Exception as exc:
            sec.add(Row(f"{name} (onnx2torch)", None, "-", note=f"does not convert: {exc}"[:160]))
            continue
        for b in sizes.batches:
            spec = graph_input(path, env.frames, b, fixed_batch=False)
            if isinstance(spec, str) or not clock.fits(4.0):
                reason = spec if isinstance(spec, str) else "section time limit"
                sec.skip_item(f"{name} (onnx2torch) batch {b}", reason)
                continue
            x = torch.from_numpy(spec[1]).to(dev)

            def run(net: Any = net, x: torch.Tensor = x) -> Any:
                with torch.inference_mode():
                    return net(x)

            try:
                out = run()
                outs = out if isinstance(out, list | tuple) else [out]
                if any(o.shape[0] != b for o in outs):
                    reason = "the outputs lose the batch (the graph's reshapes pin it to 1)"
                    sec.skip_item(f"{name} (onnx2torch) batch {b}+", reason)
                    break
                reset_peak(dev)
                with Busy(dev) as busy:
                    seconds = timed(run, dev, sizes.repeats)
            except Exception as exc:
                sec.add(Row(f"{name} (onnx2torch)", None, "-", b, dev, note=f"fails: {exc}"[:160]))
                break
            row = Row(f"{name} (onnx2torch)", b / seconds, "frames/s", b, dev, busy.value)
            row.peak_gib = peak_gib(dev)
            sec.add(row)
        del net
        free_memory(dev)


def pose_onnxruntime(sec: Section, sizes: Sizes, clock: Clock, env: Env) -> None:
    import onnxruntime as ort

    from preprocess.config import PoseConfig
    from preprocess.devices import onnx_session_options
    from preprocess.pose import create_pose_backend

    threads = sizes.threads or os.cpu_count() or 1
    graphs = pose_graphs(env)
    if not graphs:
        raise SkipSection(f"no ONNX pose model in {env.assets / 'models'} (docs/gpu.md: carry)")
    for path in graphs:
        session = ort.InferenceSession(
            str(path), onnx_session_options(threads), providers=["CPUExecutionProvider"]
        )
        for b in sizes.batches:
            spec = graph_input(path, env.frames, b)
            if isinstance(spec, str) or not clock.fits(4.0):
                reason = spec if isinstance(spec, str) else "section time limit"
                sec.skip_item(f"{path.stem} (onnxruntime) batch {b}", reason)
                continue
            feed = {spec[0]: spec[1]}
            seconds = timed(partial(session.run, None, feed), "cpu", sizes.repeats)
            note = f"{threads} threads"
            sec.add(Row(f"{path.stem} (onnxruntime)", b / seconds, "frames/s", b, "cpu", note=note))
    multipose = env.assets / "models" / "movenet_multipose.onnx"
    if multipose.is_file() and clock.fits(10.0):
        cfg = PoseConfig(backend="movenet", model=str(multipose), device="cpu", threads=threads)
        backend = create_pose_backend(cfg)
        frames = env.frames[: max(sizes.batches)]
        seconds = timed(lambda: backend.detect_frames(frames), "cpu", repeats=1)
        note = f"backend, {threads} threads, frames of {frames.shape[2]}x{frames.shape[1]}"
        sec.add(Row("pose movenet backend", len(frames) / seconds, "frames/s", 1, "cpu", note=note))
