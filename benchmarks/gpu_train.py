"""Training sections of ``benchmarks/gpu_check.py``: stage 1 and stage 2 on one GPU.

The full-size model (``model.config`` preset ``sd15``: two SD 1.5 UNets, VAE, CLIP ViT-L/14,
four guiders; AnimateDiff v2 motion modules in stage 2) with random weights, built on the
device. One optimizer step is what ``train.trainer.Trainer.loss`` does on a batch (VAE and CLIP
frozen, no grad; noise, timesteps and reference dropout; ``AnimationModel.forward``; MSE;
backward; step), on random pixels and guider inputs of the paper's sizes (896 x 640; stage 1
batch 4, stage 2 1 x 16 frames). ``train.trainer`` itself is not imported: its loader needs
WebDataset, decord and PyAV, which the GPU machine lacks.

Runtime: DeepSpeed ZeRO-2 bf16 (``jobs/deepspeed/zero2_bf16.json`` with the batch settings the
trainer writes into it, torch AdamW as the client optimizer) when ``deepspeed`` imports, else
plain bf16 autocast + fused AdamW on fp32 parameters; the rows say which. For gradient
checkpointing on and off: samples/s over ``train_steps`` steps after a warm-up step, peak
memory, and the largest batch that fits, projected from the peak memory at two batch sizes
(memory grows linearly with the batch) and, when time allows, checked by one step at it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from gpu_common import (
    REPO,
    Busy,
    Clock,
    Row,
    Section,
    Sizes,
    free_memory,
    is_oom,
    peak_gib,
    reset_peak,
    sync,
    total_gib,
)

log = logging.getLogger("gpu_check.train")

DEEPSPEED_JSON = REPO / "jobs" / "deepspeed" / "zero2_bf16.json"
STAGES = {  # stage -> (parts trained, motion modules) as jobs/train/stage{1,2}.yaml
    1: (("unet", "reference_unet", "guiders"), False),
    2: (("motion_modules",), True),
}
MEMORY_MARGIN = 0.92
"""Share of the GPU's memory a projected batch may use (allocator fragmentation, NCCL)."""


def build_model(sizes: Sizes, motion: bool) -> Any:
    """The preset's :class:`model.composed.AnimationModel`, random, built on the device."""
    import torch

    from model.composed import AnimationModel
    from model.config import preset_config

    cfg = preset_config(sizes.model, motion=motion)
    with torch.device(sizes.device):
        return AnimationModel.from_config(cfg)


def train_parts(model: Any, parts: tuple[str, ...]) -> list[Any]:
    """Set ``requires_grad`` as ``train.stages.apply_stage`` does; returns the trained tensors."""
    from model.motion import MOTION_KEY

    dead = set(model.unused_reference_parameters())
    trained = []
    for name, param in model.named_parameters():
        top = name.split(".", 1)[0]
        part = "motion_modules" if top == "unet" and MOTION_KEY in f".{name}" else top
        param.requires_grad_(part in parts and name not in dead)
        if param.requires_grad:
            trained.append(param)
    return trained


class Denoiser:
    """What DeepSpeed wraps (as ``train.stages.Denoiser``): ReferenceNet, UNet, guiders."""

    @staticmethod
    def wrap(model: Any) -> Any:
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.reference_unet, self.unet = model.reference_unet, model.unet
                self.guiders = model.guiders

            def forward(self, *args: Any) -> Any:
                return model(*args)

        return Wrapped()


@dataclass
class Runner:
    """One optimizer step, through DeepSpeed or plainly."""

    model: Any
    kind: str  # "deepspeed zero2 bf16" | "plain bf16 autocast + AdamW"
    engine: Any = None
    optimizer: Any = None

    def step(self, batch: tuple[Any, ...]) -> float:
        import torch

        loss_fn = loss_of(self.model, batch, self.engine)
        if self.engine is not None:
            loss = loss_fn()
            self.engine.backward(loss)
            self.engine.step()
        else:
            device_type = str(self.model.device).split(":")[0]
            with torch.autocast(device_type, dtype=torch.bfloat16):
                loss = loss_fn()
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def make_runner(model: Any, params: list[Any], sizes: Sizes, batch: int) -> Runner:
    """DeepSpeed ZeRO-2 bf16 when importable, else plain bf16 autocast (logged, in the rows)."""
    import torch

    dev = sizes.device
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=dev.startswith("cuda"))
    try:
        if sizes.trainer == "plain":
            raise ImportError("--trainer plain", name="deepspeed (--trainer plain)")
        import deepspeed
        from deepspeed.git_version_info import installed_ops

        cpu_op = dev.startswith("cuda") or installed_ops.get("deepspeed_shm_comm")
        if not cpu_op and sizes.trainer == "auto":  # its JIT build takes minutes on 2 cores
            raise ImportError("its CPU comm op is not prebuilt", name="deepspeed CPU op")
    except ImportError as exc:
        if sizes.trainer == "deepspeed":
            raise
        log.warning("no deepspeed (%s): plain bf16 autocast + AdamW", exc)
        freeze_frozen(model, dev, torch.bfloat16)
        kind = f"plain bf16 autocast + AdamW (no {exc.name})"
        return Runner(model, kind, None, optimizer)
    if "RANK" not in os.environ:  # one process, as train/main.py does without the launcher
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ["MASTER_PORT"] = str(port)
    deepspeed.init_distributed(dist_backend="nccl" if dev.startswith("cuda") else "gloo")
    config = json.loads(DEEPSPEED_JSON.read_text())  # + what train.trainer.deepspeed_config adds
    config.update(
        train_micro_batch_size_per_gpu=batch,
        gradient_accumulation_steps=1,
        gradient_clipping=1.0,
        zero_allow_untested_optimizer=True,
        steps_per_print=10**9,
    )
    engine, _, _, _ = deepspeed.initialize(
        model=Denoiser.wrap(model), optimizer=optimizer, config=config
    )
    for buffer in model.unet.buffers():  # as the trainer: bf16 parameters, bf16 buffers
        if buffer.is_floating_point():
            buffer.data = buffer.data.to(torch.bfloat16)
    freeze_frozen(model, dev, torch.bfloat16)
    return Runner(model, "deepspeed zero2 bf16", engine, optimizer)


def freeze_frozen(model: Any, device: str, dtype: Any) -> None:
    for frozen in (model.vae, model.image_encoder):
        frozen.to(device, dtype).eval().requires_grad_(False)


def make_batch(model: Any, b: int, frames: int, sizes: Sizes) -> tuple[Any, ...]:
    """Random pixels (B, F, 3, H, W), reference (B, 3, H, W), CLIP input and guider inputs."""
    import torch

    from model.guiders import Conditions

    dev, h, w = sizes.device, sizes.height, sizes.width
    clip = model.cfg.image_encoder.image_size

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=dev)

    conditions = Conditions(
        pose=rand(b, frames, 3, h, w),
        flow=rand(b, frames, 2, h, w),
        order=rand(b, frames, 1, h, w),
        reference_pose=rand(b, 1, 3, h, w),
    )
    pixels = rand(b, frames, 3, h, w) * 2 - 1  # (B, F, 3, H, W) in [-1, 1]
    return pixels, rand(b, 3, h, w) * 2 - 1, rand(b, 3, clip, clip), conditions


def loss_of(model: Any, batch: tuple[Any, ...], engine: Any) -> Any:
    """The trainer's loss on ``batch`` (a closure, so autocast can wrap it)."""
    import torch
    import torch.nn.functional as F

    from model.components import build_ddpm

    pixels, reference, clip_pixels, conditions = batch
    b, f = pixels.shape[:2]
    dtype = torch.bfloat16

    def run() -> torch.Tensor:
        with torch.no_grad():
            latents = model.encode_images(pixels.flatten(0, 1).to(dtype))  # (B*F, 4, h, w)
            latents = latents.float().unflatten(0, (b, f))  # (B, F, 4, h, w)
            ref = model.encode_images(reference.to(dtype))  # (B, 4, h, w)
            clip = model.embed_reference(clip_pixels.to(dtype))  # (B, D)
        noise = torch.randn_like(latents)
        t: Any = torch.randint(0, 1000, (b,), device=latents.device)  # (B,) long
        keep = torch.rand(b, device=latents.device) >= 0.1
        noisy = build_ddpm(model.cfg).add_noise(latents, noise, t)  # (B, F, 4, h, w)
        module = engine if engine is not None else model
        cast = dtype if engine is not None else torch.float32
        prediction = module(noisy.to(cast), t, ref.to(cast), clip.to(cast), conditions, keep)
        return F.mse_loss(prediction.float(), noise)

    return run


def set_checkpointing(model: Any, on: bool) -> None:
    for unet in (model.unet, model.reference_unet):
        if on:
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()


def timed_steps(runner: Runner, batch: tuple[Any, ...], steps: int, dev: str) -> tuple[float, Any]:
    """(seconds per step over ``steps`` steps after a warm-up step, the Busy sampler)."""
    runner.step(batch)
    sync(dev)
    reset_peak(dev)
    with Busy(dev) as busy:
        start = time.perf_counter()
        for _ in range(steps):
            runner.step(batch)
        sync(dev)
        seconds = (time.perf_counter() - start) / steps
    return seconds, busy


def stage(sec: Section, sizes: Sizes, clock: Clock, number: int) -> None:
    """Stage ``number`` (1 or 2): samples/s, peak memory and the largest batch, per
    checkpointing setting."""
    parts, motion = STAGES[number]
    dev = sizes.device
    frames = 1 if number == 1 else sizes.stage2_frames
    configured = sizes.stage1_batch if number == 1 else 1
    other = 1 if configured > 1 else 2  # the second batch of the memory line
    t0 = time.perf_counter()
    model = build_model(sizes, motion)
    params = train_parts(model, parts)
    runner = make_runner(model, params, sizes, configured)
    sec.notes.append(
        f"{runner.kind}; {sum(p.numel() for p in params) / 1e6:.1f} M trained parameters; "
        f"model built in {time.perf_counter() - t0:.1f} s"
    )
    what = (
        f"stage {number} ({frames} frame{'s' if frames > 1 else ''} x {sizes.height}x{sizes.width})"
    )
    for ckpt in (True, False):
        label = f"{what}, checkpointing {'on' if ckpt else 'off'}"
        set_checkpointing(model, ckpt)
        peaks: dict[int, float] = {}
        step_s = 0.0
        for b in (configured, other):
            if b == other and total_gib(dev) is None:
                sec.skip_item(f"{label} batch {b}", "only for the memory line (GPU)")
                continue
            estimate = 4 * step_s * b / configured if step_s else 30.0
            if not clock.fits(estimate):
                sec.skip_item(f"{label} batch {b}", "section time limit")
                continue
            try:
                seconds, busy = timed_steps(
                    runner, make_batch(model, b, frames, sizes), sizes.train_steps, dev
                )
            except RuntimeError as exc:
                if not is_oom(exc):
                    raise
                sec.add(Row(label, None, "samples/s", b, dev, note="out of memory"))
                free_memory(dev)
                continue
            step_s = step_s or seconds
            sec.add(
                Row(label, b / seconds, "samples/s", b, dev, busy.value, peak_gib(dev), runner.kind)
            )
            peak = peak_gib(dev)
            if peak is not None:
                peaks[b] = peak
            free_memory(dev)
        largest_batch(sec, runner, model, label, peaks, step_s / configured, frames, sizes, clock)


def largest_batch(
    sec: Section,
    runner: Runner,
    model: Any,
    label: str,
    peaks: dict[int, float],
    per_sample_s: float,
    frames: int,
    sizes: Sizes,
    clock: Clock,
) -> None:
    """Project the largest batch from the memory line through two peaks; try it if time allows."""
    dev = sizes.device
    total = total_gib(dev)
    if total is None or len(peaks) < 2:
        reason = "no GPU memory figures" if total is None else "needs peaks at two batch sizes"
        sec.skip_item(f"{label}: largest batch", reason)
        return
    (b1, m1), (b2, m2) = sorted(peaks.items())
    per_sample = (m2 - m1) / (b2 - b1)
    base = m1 - per_sample * b1
    largest = max(1, int((total * MEMORY_MARGIN - base) / max(per_sample, 1e-6)))
    note = f"projected: {base:.1f} GiB + {per_sample:.2f} GiB per sample, {MEMORY_MARGIN:.0%} of {total:.0f} GiB"
    estimate = 3 * per_sample_s * largest
    if clock.fits(estimate):
        try:
            runner.step(make_batch(model, largest, frames, sizes))
            sync(dev)
            note += f"; one step at {largest} ran (peak {peak_gib(dev)} GiB)"
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            note += f"; one step at {largest} ran out of memory"
        free_memory(dev)
    else:
        note += f"; not tried (about {estimate:.0f} s, {clock.left():.0f} s left)"
    sec.add(Row(f"{label}: largest batch", largest, "samples", "-", dev, note=note))
