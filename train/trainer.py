"""The trainer: DeepSpeed engine over the trainable parts, the loop, checkpoints, logging.

One optimizer step (``train.grad_accum`` micro-batches)::

    Batch --VAE (frozen, no grad)--> target latents (B, F, 4, h, w), reference latents
          --CLIP (frozen, no grad)--> image embedding (B, D)
    noise, t ~ U[0, T), reference kept with prob. 1 - train.reference_dropout
    DeepSpeed(Denoiser) --AnimationModel.forward--> prediction --MSE vs ε (or v)--> backward

Only the ReferenceNet, the denoising UNet and the guiders are inside the DeepSpeed engine
(``train.stages.Denoiser``), and only the stage's trainable parameters reach the optimizer;
the frozen VAE and CLIP encoder are plain modules on the device, in eval mode, in the
engine's dtype. ZeRO stages 1-2 keep full parameters on every rank, which validation and
the export rely on. The export (``output_dir/export``) records the stage's guiders and what
the training data was made with (:mod:`train.provenance`: geometry, extractors, settings).
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.tensorboard import SummaryWriter

from model.components import build_ddpm
from shards.config import config_to_dict, dump_config
from train.checkpoints import (
    checkpoint_dir,
    export_model,
    latest_tag,
    load_rank_state,
    prune_checkpoints,
    rng_state,
    save_rank_state,
    set_rng_state,
    tag_of,
    zero_fp32_weights,
)
from train.config import TrainConfig
from train.loader import Batch, ClipStream, make_loader, select_clips
from train.provenance import check_clip_extractors, read_provenance
from train.stages import Denoiser, apply_stage, load_stage_model
from train.validation import run_validation, validation_examples

log = logging.getLogger(__name__)

SDPA = {
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
CHECKED_CLIPS = 4
"""Clips whose own extractor metadata is compared with the output's at start-up."""
STEP_LINE = "step %d/%d loss %.4f lr %.3e samples/s %.2f data-wait %.2f skipped %d (%s) epoch %d"


def deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    """The DeepSpeed JSON with batch sizes and clipping from the training config."""
    ds: dict[str, Any] = json.loads(Path(cfg.deepspeed).read_text())
    for owned in ("optimizer", "scheduler", "train_batch_size"):
        if owned in ds:
            raise ValueError(
                f"{cfg.deepspeed}: remove {owned!r}; the optimizer (train.lr, train.betas), "
                "its schedule (train.warmup_steps) and batch sizes come from the training config"
            )
    zero = int(ds.get("zero_optimization", {}).get("stage", 0))
    if zero > 2:
        raise ValueError(f"{cfg.deepspeed}: ZeRO stage {zero}; use 0-2 (full parameters per rank)")
    ds["train_micro_batch_size_per_gpu"] = cfg.train.batch_size
    ds["gradient_accumulation_steps"] = cfg.train.grad_accum
    ds["gradient_clipping"] = cfg.train.grad_clip
    ds["zero_allow_untested_optimizer"] = True  # torch.optim.AdamW: no JIT-built op needed
    ds.setdefault("steps_per_print", 10**9)  # our own step line instead
    return ds


def _dtype(ds: dict[str, Any]) -> torch.dtype:
    if ds.get("bf16", {}).get("enabled"):
        return torch.bfloat16
    if ds.get("fp16", {}).get("enabled"):
        return torch.float16
    return torch.float32


class Trainer:
    """One training stage; :meth:`fit` runs it to ``train.max_steps``."""

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.out = Path(cfg.output_dir)
        self.data = read_provenance(cfg.data.root)
        self.selection = select_clips(cfg.data, cfg.validation.clips)
        if self.rank == 0:  # the first clips' own extractors against the output's
            keys = sorted(self.selection.repeats)[:CHECKED_CLIPS]
            check_clip_extractors(cfg.data.root, keys, self.data.record)
        self.model = load_stage_model(cfg.init_from, cfg.stage, self.data)
        self.trained = apply_stage(self.model, cfg.stage)
        if cfg.train.gradient_checkpointing:
            self.model.unet.enable_gradient_checkpointing()
            self.model.reference_unet.enable_gradient_checkpointing()
        self.ds_config = deepspeed_config(cfg)
        self.dtype = _dtype(self.ds_config)
        denoiser = Denoiser(self.model)
        params = [p for p in denoiser.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg.train.lr,
            betas=(cfg.train.betas[0], cfg.train.betas[1]),
            weight_decay=cfg.train.weight_decay,
            fused=torch.cuda.is_available() or None,
        )
        warmup = cfg.train.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=denoiser, optimizer=optimizer, lr_scheduler=schedule, config=self.ds_config
        )
        self.device = self.engine.device
        # DeepSpeed casts parameters, not buffers, to bf16/fp16; the motion modules' frame-
        # position table is a buffer added to bf16 activations, so it follows the parameters.
        for buffer in denoiser.buffers():
            if buffer.is_floating_point():
                buffer.data = buffer.data.to(self.dtype)
        for frozen in (self.model.vae, self.model.image_encoder):
            frozen.to(self.device, self.dtype).eval().requires_grad_(False)
        self.ddpm = build_ddpm(self.model.cfg)
        self.noise = torch.Generator(self.device).manual_seed(cfg.train.seed + 1000003 * self.rank)
        self.ema = self._init_ema()
        self.step = 0
        self.batches = 0
        self.positions: dict[int, tuple[int, int]] = {}
        self.skipped: dict[str, int] = {}
        if resume:
            self._resume()
        self.tb = (
            SummaryWriter(str(self.out / "tensorboard"))
            if self.rank == 0 and cfg.log.tensorboard
            else None
        )
        self.validation = (
            validation_examples(cfg, self.selection.holdout, self.model)
            if self.rank == 0 and self.selection.holdout and cfg.validation.every > 0
            else []
        )

    # ---- state ------------------------------------------------------------------------------
    def _init_ema(self) -> dict[str, torch.Tensor]:
        if self.cfg.train.ema_decay <= 0:
            return {}
        named = dict(self.model.named_parameters())
        return {n: named[n].detach().float().clone() for n in self.trained}

    def _update_ema(self) -> None:
        decay = self.cfg.train.ema_decay
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, avg in self.ema.items():
                avg.lerp_(named[name].detach().float(), 1 - decay)

    def save(self) -> None:
        """A DeepSpeed checkpoint of the current step plus every rank's own state."""
        tag = tag_of(self.step)
        folder = checkpoint_dir(self.out) / tag
        rank_state = {
            "positions": {k: list(v) for k, v in self.positions.items()},
            "batches": self.batches,
            "skipped": dict(self.skipped),
            "rng": rng_state(self.noise),
        }
        save_rank_state(folder, self.rank, rank_state)
        dist.barrier()
        client = {"step": self.step, "config": config_to_dict(self.cfg), "ema": self.ema}
        self.engine.save_checkpoint(str(checkpoint_dir(self.out)), tag=tag, client_state=client)
        if self.rank == 0:
            prune_checkpoints(self.out, self.cfg.checkpoint.keep)
            log.info("saved checkpoint %s", folder)

    def _resume(self) -> None:
        tag = latest_tag(self.out)
        if tag is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {checkpoint_dir(self.out)}")
        path, client = self.engine.load_checkpoint(str(checkpoint_dir(self.out)), tag=tag)
        if path is None or client is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {tag} of {self.out}")
        self.step = int(client["step"])
        if self.ema:
            self.ema = {k: v.to(self.device) for k, v in client["ema"].items()}
        state = load_rank_state(checkpoint_dir(self.out) / tag, self.rank)
        self.positions = {int(k): (int(v[0]), int(v[1])) for k, v in state["positions"].items()}
        self.batches = int(state["batches"])
        self.skipped = dict(state["skipped"])
        set_rng_state(state["rng"], self.noise)
        log.info("resumed from %s at step %d (data positions %s)", tag, self.step, self.positions)

    # ---- the loop ---------------------------------------------------------------------------
    def _loader(self) -> Any:
        workers = max(1, self.cfg.data.workers)
        dataset = ClipStream(
            self.cfg.data,
            self.selection,
            self.cfg.stage.frames,
            self.model.cfg.geometry,
            self.model.cfg,
            rank=self.rank,
            world_size=self.world,
            start=self.positions,
            rotate=self.batches % workers,
        )
        return make_loader(dataset, self.cfg.train.batch_size)

    def _attention(self) -> AbstractContextManager[Any]:
        backends = SDPA.get(self.cfg.train.attention)
        return sdpa_kernel(backends) if backends else nullcontext()

    def loss(self, batch: Batch) -> torch.Tensor:
        """The diffusion loss of one micro-batch (forward only)."""
        model, dev, dtype = self.model, self.device, self.dtype
        frames, reference = batch.pixels(dev, dtype)  # (B, F, 3, H, W), (B, 3, H, W) in [-1, 1]
        b, f = frames.shape[:2]
        with torch.no_grad():
            latents = model.encode_images(frames.flatten(0, 1))  # (B*F, 4, h, w)
            latents = latents.float().unflatten(0, (b, f))  # (B, F, 4, h, w)
            ref_latents = model.encode_images(reference)  # (B, 4, h, w)
            clip = model.embed_reference(batch.clip_pixels.to(dev, dtype))  # (B, D)
        noise = torch.randn(latents.shape, generator=self.noise, device=dev)
        if self.cfg.train.noise_offset:
            offset = torch.randn((b, f, latents.shape[2], 1, 1), generator=self.noise, device=dev)
            noise = noise + self.cfg.train.noise_offset * offset
        steps = self.model.cfg.scheduler.num_train_timesteps
        t: Any = torch.randint(0, steps, (b,), generator=self.noise, device=dev)  # (B,) long
        keep = torch.rand(b, generator=self.noise, device=dev) >= self.cfg.train.reference_dropout
        noisy = self.ddpm.add_noise(latents, noise, t)  # (B, F, 4, h, w)
        if model.cfg.scheduler.prediction_type == "v_prediction":
            target = self.ddpm.get_velocity(latents, noise, t)
        else:
            target = noise
        prediction = self.engine(
            noisy.to(dtype),
            t,
            ref_latents.to(dtype),
            clip.to(dtype),
            batch.conditions(dev, dtype),
            keep,
        )
        return F.mse_loss(prediction.float(), target)

    def fit(self) -> dict[str, float]:
        """Train to ``train.max_steps``; returns the last logged metrics."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.out / "config.yaml")
        loader = iter(self._loader())
        self.engine.train()
        metrics: dict[str, float] = {}
        window = {"loss": 0.0, "wait": 0.0, "time": 0.0, "samples": 0.0, "steps": 0.0}
        while self.step < cfg.train.max_steps:
            start = time.perf_counter()
            loss_sum, wait = 0.0, 0.0
            for _ in range(cfg.train.grad_accum):
                fetch = time.perf_counter()
                batch = next(loader)
                wait += time.perf_counter() - fetch
                self._account(batch)
                # The kernel choice covers the backward: checkpointed blocks recompute there.
                with self._attention():
                    loss = self.loss(batch)
                    self.engine.backward(loss)
                self.engine.step()
                loss_sum += float(loss.detach())
            self.step += 1
            if self.ema:
                self._update_ema()
            loss_value = self._mean_across_ranks(loss_sum / cfg.train.grad_accum)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {self.step}")
            window["loss"] += loss_value
            window["wait"] += wait
            window["time"] += time.perf_counter() - start
            window["samples"] += cfg.train.batch_size * cfg.train.grad_accum * self.world
            window["steps"] += 1
            if self.step % cfg.log.every == 0 or self.step == cfg.train.max_steps:
                metrics = self._log(window)
                window = dict.fromkeys(window, 0.0)
            if self.step % cfg.checkpoint.every == 0 or self.step == cfg.train.max_steps:
                self.save()
            every = cfg.validation.every
            if self.validation and (self.step % every == 0 or self.step == cfg.train.max_steps):
                self._validate()
        if cfg.checkpoint.export:
            self.export()
        if self.tb is not None:
            self.tb.close()
        return metrics

    def _account(self, batch: Batch) -> None:
        self.batches += 1
        self.positions[batch.stream] = batch.position
        for reason, n in batch.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def _mean_across_ranks(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world

    def _log(self, window: dict[str, float]) -> dict[str, float]:
        skipped = torch.tensor([sum(self.skipped.values())], device=self.device)
        if self.world > 1:
            dist.all_reduce(skipped)
        steps = max(1, int(window["steps"]))
        metrics = {
            "step": self.step,
            "loss": window["loss"] / steps,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "samples_per_s": window["samples"] / max(window["time"], 1e-9),
            "data_wait": window["wait"] / max(window["time"], 1e-9),
            "skipped": float(skipped),
        }
        if self.rank != 0:
            return metrics
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "-"
        epoch = max((p[0] for p in self.positions.values()), default=0)
        log.info(
            STEP_LINE,
            self.step,
            self.cfg.train.max_steps,
            metrics["loss"],
            metrics["lr"],
            metrics["samples_per_s"],
            metrics["data_wait"],
            int(metrics["skipped"]),
            reasons,
            epoch,
        )
        if self.tb is not None:
            for name, value in metrics.items():
                if name != "step":
                    self.tb.add_scalar(f"train/{name}", value, self.step)
            self.tb.flush()
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        return metrics

    def _validate(self) -> None:
        window = self.cfg.stage.frames if self.model.cfg.motion.enabled else 8
        for result, path, scores in run_validation(
            self.model, self.validation, self.cfg, self.step, window
        ):
            if self.tb is None:
                continue
            grid = result.grid()[len(result.grid()) // 2]  # (H, 3W, 3) middle frame
            self.tb.add_image(f"validation/{result.key}", grid, self.step, dataformats="HWC")
            for name, value in scores.items():
                self.tb.add_scalar(f"validation/{name}", value, self.step)
            self.tb.add_text(f"validation/{result.key}", str(path), self.step)
        self.engine.train()

    # ---- export ---------------------------------------------------------------------------
    def export(self) -> Path | None:
        """Write ``output_dir/export`` (rank 0, :func:`train.checkpoints.export_model`): fp32
        master weights of the trained parameters (from the last checkpoint's ZeRO partitions
        when training in bf16/fp16), or their EMA."""
        dist.barrier()
        if self.rank != 0:
            return None
        if self.ema:
            weights = self.ema
        elif self.dtype != torch.float32:
            weights = zero_fp32_weights(self.out, self.step)
        else:
            named = dict(self.model.named_parameters())
            weights = {n: named[n] for n in self.trained}
        out = export_model(self.cfg, weights, self.trained, self.data)
        log.info("exported %s (stage %s, step %d)", out, self.cfg.stage.name, self.step)
        return out
