"""Time and peak memory per denoising step of the animation model, measured in one run.

    .venv/bin/python benchmarks/denoising.py             # tiny on CPU (+ sd15 on CUDA if any)
    .venv/bin/python benchmarks/denoising.py --skip-sd15 --steps 5 --threads 2
    .venv/bin/python benchmarks/denoising.py --quick     # seconds: a smoke run of the tiny model
    .venv/bin/python benchmarks/denoising.py --sd15-device cpu --sd15-size 2x64x64 --steps 1

A denoising step is what :func:`model.pipeline.sample_latents` does per window and timestep:
one classifier-free-guided prediction (two UNet evaluations: with and without the reference)
of a 16-frame window, through the pipeline's own functions. Reported per configuration: the
one-time costs (building, ReferenceNet, guiders), seconds per step (median, min and max
over ``--steps`` after one warm-up), seconds per single UNet evaluation (the CFG ratio should be
about 2), peak memory during the steps, and VAE decoding of the window. CPU memory is the
process's peak resident set (VmHWM, reset before each phase); CUDA memory is
``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache).

Weights are random (no public weights here): the timings and memory are those of the real
architectures, the outputs are noise. The sd15 run is the paper's inference setting:
640 x 896 pixels, 16 frames, bf16, stage 2 (motion modules), CFG 1.5. The paper reports
24 GB for inference at that size. The figures go to stdout, for docs/model.md.

(Not named ``model.py``: Python puts a script's folder first on ``sys.path``, so a
``benchmarks/model.py`` would shadow the package ``model`` it measures.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from model.composed import AnimationModel
from model.config import ModelConfig, preset_config
from model.guiders import Conditions
from model.pipeline import decode_frames, encode_reference, guided_prediction

T = TypeVar("T")
QUICK = ["--skip-sd15", "--steps", "1", "--tiny-size", "2x32x32"]
"""``--quick``: a smoke run (seconds) of the tiny model through every phase."""


class Memory:
    """Peak memory of a phase: CUDA allocations, or the process's peak RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.base = 0.0

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.base = self.current_gib()

    def report(self) -> str:
        peak = self.peak_gib()
        kind = "CUDA allocated" if self.cuda else "process RSS"
        return f"peak {peak:.2f} GiB {kind} (+{peak - self.base:.2f} over the phase's start)"

    def peak_gib(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**30
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
        raise RuntimeError("no VmHWM in /proc/self/status")

    def current_gib(self) -> float:
        if self.cuda:
            return torch.cuda.memory_allocated() / 2**30
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
        raise RuntimeError("no VmRSS in /proc/self/status")


def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(result, seconds) of ``fn()``, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def parameters(cfg: ModelConfig) -> dict[str, int]:
    with torch.device("meta"):
        model = AnimationModel.from_config(cfg)
    parts = ("unet", "reference_unet", "guiders", "vae", "image_encoder")
    return {p: sum(t.numel() for t in getattr(model, p).parameters()) for p in parts}


def random_inputs(
    model: AnimationModel, frames: int, height: int, width: int
) -> tuple[Conditions, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    dev, dt = model.device, model.dtype
    h, w = height // 8, width // 8
    cond = Conditions(
        pose=torch.rand(1, frames, 3, height, width, generator=g),
        flow=torch.rand(1, frames, 2, height, width, generator=g),
        order=torch.rand(1, frames, 1, height, width, generator=g),
        reference_pose=torch.rand(1, 1, 3, height, width, generator=g),
    ).to(dev, dt)
    latents = torch.randn(1, frames, 4, h, w, generator=g).to(dev, dt)
    ref_latents = torch.randn(1, 4, h, w, generator=g).to(dev, dt)
    embeds = torch.randn(1, model.cfg.unet.cross_attention_dim, generator=g).to(dev, dt)
    return cond, latents, ref_latents, embeds


def build(
    cfg: ModelConfig, device: torch.device, dtype: torch.dtype, mem: Memory
) -> AnimationModel:
    mem.reset()
    start = time.perf_counter()
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: no fp32 copy at full size
    try:
        with torch.device(device):
            model = AnimationModel.from_config(cfg).to(dtype).eval()
    finally:
        torch.set_default_dtype(default)
    seconds = time.perf_counter() - start
    print(f"build (random init): {seconds:.1f} s, resident {mem.current_gib():.2f} GiB")
    return model


def measure_steps(
    model: AnimationModel, size: tuple[int, int, int], steps: int, mem: Memory
) -> None:
    device = model.device
    cond, latents, ref_latents, embeds = random_inputs(model, *size)
    mem.reset()
    reference, t_ref = timed(lambda: encode_reference(model, ref_latents, embeds), device)
    with torch.no_grad():
        c_multi, t_guide = timed(lambda: model.guide(cond), device)
    print(f"once per video: ReferenceNet {t_ref:.3f} s, guiders ({size[0]} frames) {t_guide:.3f} s")
    t = torch.tensor(500, device=device)

    def step(scale: float) -> Callable[[], torch.Tensor]:
        return lambda: guided_prediction(model, latents, t, c_multi, reference, scale)

    mem.reset()
    timed(step(1.5), device)  # warm-up (inside the memory phase: first allocations count)
    with_cfg = [timed(step(1.5), device)[1] for _ in range(steps)]
    print(f"memory during the steps: {mem.report()}")
    single = [timed(step(1.0), device)[1] for _ in range(steps)]
    med, one = statistics.median(with_cfg), statistics.median(single)
    print(
        f"denoising step (CFG = 2 UNet evaluations, {size[0]}-frame window): "
        f"median {med:.3f} s, min {min(with_cfg):.3f} s, max {max(with_cfg):.3f} s over {steps}"
    )
    print(f"single UNet evaluation: median {one:.3f} s; CFG/single ratio {med / one:.2f}")
    print(f"projected 50 steps of one window: {50 * med:.1f} s")
    mem.reset()
    _, t_dec = timed(lambda: decode_frames(model, latents), device)
    print(f"VAE decode of the window (chunks of 8 frames): {t_dec:.3f} s, {mem.report()}")


def run(
    name: str,
    cfg: ModelConfig,
    steps: int,
    device: torch.device,
    dtype: torch.dtype,
    size: tuple[int, int, int],
) -> None:
    frames, height, width = size
    print(f"\n== {name}: {width}x{height} px, {frames} frames, {dtype}, {device}, stage 2, CFG 1.5")
    counts = parameters(cfg)
    print("parameters (M): " + ", ".join(f"{k} {v / 1e6:.3f}" for k, v in counts.items()))
    mem = Memory(device)
    model = build(cfg, device, dtype, mem)
    measure_steps(model, size, steps, mem)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--tiny-size", default="16x128x96", help="FRAMESxHEIGHTxWIDTH for tiny")
    p.add_argument("--skip-sd15", action="store_true", help="no sd15 run even with CUDA")
    p.add_argument("--sd15-size", default="16x896x640", help="FRAMESxHEIGHTxWIDTH for sd15")
    p.add_argument(
        "--sd15-device",
        default="",
        help="run sd15 here even without CUDA (e.g. cpu with a small --sd15-size); "
        "default: cuda when available, else only parameter counts",
    )
    p.add_argument("--quick", action="store_true", help=f"smoke run: {' '.join(QUICK)}")
    args = p.parse_args(argv)
    if args.quick:
        args = p.parse_args([*(argv if argv is not None else sys.argv[1:]), *QUICK])
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, CUDA {torch.cuda.is_available()}"
    )
    frames, height, width = (int(v) for v in args.tiny_size.split("x"))
    tiny = preset_config("tiny", motion=True)
    size = (frames, height, width)
    run("tiny (random weights)", tiny, args.steps, torch.device("cpu"), torch.float32, size)
    if args.skip_sd15:
        return 0
    device = args.sd15_device or ("cuda" if torch.cuda.is_available() else "")
    sd15 = preset_config("sd15", motion=True)
    if not device:
        counts = parameters(sd15)
        total = sum(counts.values())
        print("\n== sd15: no CUDA device, timing skipped (the paper reports 24 GB on one GPU)")
        print("parameters (M): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in counts.items()))
        print(f"weights in bf16: {2 * total / 2**30:.2f} GiB ({total / 1e6:.0f}M parameters)")
        return 0
    frames, height, width = (int(v) for v in args.sd15_size.split("x"))
    size = (frames, height, width)
    run("sd15 (random weights)", sd15, args.steps, torch.device(device), torch.bfloat16, size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
