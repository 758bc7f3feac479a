"""The training job's typed config (presets in ``jobs/train/*.yaml``).

Precedence: these defaults < the YAML preset < ``section.key=value`` overrides on the command
line. The defaults are the paper's full-scale settings (896x640 resize + centre crop, Adam at
lr 1e-5, stage 1 batch 4, stage 2 batch 1 x 16 frames, 60k steps each). The resolved config
is written to ``output_dir/config.yaml`` and into every checkpoint.

What a stage trains, freezes and loads is data (:class:`StageSpec`), not code: stage 1 and
stage 2 are the same trainer with two presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.config import GUIDER_NAMES

PARTS = ("unet", "motion_modules", "reference_unet", "guiders")
"""Trainable parts: ``unet`` = the denoising UNet's spatial (SD 1.5) layers, ``motion_modules``
= its AnimateDiff layers, ``reference_unet`` = the ReferenceNet, ``guiders`` = the model's
guiders (all four, or those ``stage.guiders`` keeps). The VAE and the CLIP image encoder are always frozen and live outside DeepSpeed."""


@dataclass
class StageSpec:
    """What a stage loads, adds, trains and freezes."""

    name: str = "stage1"
    """Label in logs and in the exported model's provenance."""
    train: list[str] = field(default_factory=lambda: ["unet", "reference_unet", "guiders"])
    """Parts to train (see ``PARTS``); every other parameter is frozen."""
    motion_modules: bool = False
    """Add AnimateDiff motion modules when ``init_from`` has none (stage 2)."""
    motion_module_weights: str = ""
    """Weights of the added motion modules: AnimateDiff v2 ``mm_sd_v15_v2.ckpt`` or a
    diffusers ``MotionAdapter`` folder. Empty: fresh modules with zeroed outputs (plumbing
    only; the paper starts from AnimateDiff v2)."""
    frames: int = 1
    """Target frames per sample: 1 (stage 1: one frame of the clip) or 16 (stage 2)."""
    guiders: list[str] = field(default_factory=list)
    """Guiders the trained model keeps, of ``pose``, ``flow``, ``order``, ``reference_pose``
    (the model's guider names); the others are removed from ``init_from``'s model: not
    trained, not fed (the loader does not build their inputs) and not in the export, whose
    ``guiders.names`` tells inference. The paper's Table 4 variants, e.g.
    ``[pose, flow, reference_pose]`` (no depth order). Empty: all of ``init_from``'s."""


@dataclass
class DataConfig:
    """The streaming loader over a preprocessing output."""

    root: str = ""
    """Preprocessing output (``shards/`` + ``stats/``), a local path or ``s3://``."""
    where: str = ""
    """SQL filter over the clips table (DuckDB), e.g. ``bg_flow_mean < 20 and
    characters_max >= 1``; empty keeps every clip."""
    keys: str = ""
    """Keys file (local path or ``s3://``): one clip key per line, as ``python -m shards
    select --to FILE.txt`` and the dataset browser's export write it (or select's JSON).
    Training then reads only these clips (and ``where`` still applies); a key that is not a
    clip of ``root`` is an error. Empty: no key filter."""
    multi_character_repeat: float = 1.0
    """Oversampling: each clip with ``characters_max >= 2`` is read this many times per epoch
    (the fractional part as a seeded coin flip)."""
    height: int = 896
    """Training canvas height (frames are resized to cover it, then centre-cropped)."""
    width: int = 640
    """Training canvas width."""
    frame_stride: int = 1
    """Stage 2: distance between the consecutive frames of a training window."""
    workers: int = 2
    """DataLoader worker processes per rank (0: load in the training process)."""
    shuffle_buffer: int = 64
    """Clips in the seeded shuffle buffer (encoded bytes, before decoding)."""
    prefetch: int = 2
    """Batches each worker prepares ahead."""
    seed: int = 0
    """Seed of the shard shuffle, the sample shuffle and the per-sample frame choices."""


@dataclass
class LoopConfig:
    """The optimisation loop."""

    max_steps: int = 60000
    """Optimizer steps to train for (the paper: 60k per stage)."""
    batch_size: int = 4
    """Clips per rank per micro-step (the paper: 4 in stage 1, 1 in stage 2, on 8 GPUs)."""
    grad_accum: int = 1
    """Micro-steps per optimizer step."""
    lr: float = 1e-5
    """Adam learning rate (the paper: 1e-5)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam betas."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0 is plain Adam as in the paper."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0, then constant."""
    grad_clip: float = 1.0
    """Gradient-norm clipping (0: off)."""
    reference_dropout: float = 0.1
    """Probability of dropping a clip's reference (zero CLIP context, no reference tokens;
    guiders kept) so the model also learns the unconditional branch of classifier-free
    guidance that ``model.pipeline`` samples with."""
    noise_offset: float = 0.0
    """Offset noise (0: off)."""
    ema_decay: float = 0.0
    """EMA of the trained parameters (0: off); the export then holds the EMA weights."""
    gradient_checkpointing: bool = False
    """Recompute the UNets' blocks in the backward pass (less memory, ~30% slower)."""
    attention: str = "auto"
    """Scaled-dot-product attention kernels: ``auto`` (PyTorch picks) | ``flash`` |
    ``efficient`` | ``math``."""
    seed: int = 0
    """Seed of the noise and timesteps (offset by rank)."""


@dataclass
class CheckpointConfig:
    """DeepSpeed checkpoints and the exported model folder."""

    every: int = 1000
    """Save a checkpoint every this many steps (and at the end)."""
    keep: int = 3
    """Checkpoints kept (older ones are deleted by rank 0)."""
    export: bool = True
    """Write ``output_dir/export`` (a model folder) at the end."""
    export_dtype: str = "float32"
    """dtype of the exported weights: ``float32`` | ``bfloat16`` | ``float16``."""


@dataclass
class LogConfig:
    """Step lines and TensorBoard."""

    every: int = 10
    """Log a step line and TensorBoard scalars every this many steps."""
    tensorboard: bool = True
    """Write TensorBoard scalars under ``output_dir/tensorboard``."""


@dataclass
class ValidationConfig:
    """Periodic validation animations of held-out clips (rank 0)."""

    every: int = 1000
    """Animate the held-out clips every this many steps (0: never; also at the end)."""
    clips: int = 1
    """Clips held out of training for validation (chosen by a hash of their key), also
    when ``every`` is 0, so that switching validation off keeps the same training data."""
    frames: int = 16
    """Driving frames animated per held-out clip."""
    steps: int = 25
    """DDIM steps of the validation sampling."""
    guidance_scale: float = 1.5
    """Classifier-free guidance of the validation sampling."""
    seed: int = 0
    """Seed of the validation noise (the same every time, so videos are comparable)."""


@dataclass
class TrainConfig:
    """One training stage (``deepspeed train/main.py --config jobs/train/stage1.yaml``)."""

    output_dir: str = "out/train/stage1"
    """Checkpoints, TensorBoard, validation videos, ``config.yaml`` and ``export/``."""
    init_from: str = ""
    """Model folder to start from (``python -m model.init`` output for stage 1, the stage-1
    ``export/`` for stage 2)."""
    deepspeed: str = "jobs/deepspeed/zero2_bf16.json"
    """DeepSpeed JSON (ZeRO stage, precision, communication); batch sizes, clipping, the
    optimizer and its schedule come from this config."""
    stage: StageSpec = field(default_factory=StageSpec)
    data: DataConfig = field(default_factory=DataConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def check_train_config(cfg: TrainConfig) -> None:
    """Raise ``ValueError`` naming every setting that cannot work."""
    problems = []
    if not cfg.data.root:
        problems.append("data.root is empty: point it at a preprocessing output")
    if not cfg.init_from:
        problems.append("init_from is empty: point it at a model folder (python -m model.init)")
    unknown = sorted(set(cfg.stage.train) - set(PARTS))
    if unknown or not cfg.stage.train:
        problems.append(f"stage.train must name parts of {list(PARTS)}, got {cfg.stage.train}")
    guiders = cfg.stage.guiders
    if set(guiders) - set(GUIDER_NAMES) or len(set(guiders)) != len(guiders):
        problems.append(f"stage.guiders must name distinct guiders of {list(GUIDER_NAMES)}")
    elif guiders and not set(guiders) & {"pose", "flow", "order"}:
        problems.append("stage.guiders needs a per-frame guider (pose, flow or order)")
    if "motion_modules" in cfg.stage.train and not cfg.stage.motion_modules:
        problems.append("stage.train has motion_modules but stage.motion_modules is false")
    if cfg.stage.frames < 1 or cfg.data.frame_stride < 1:
        problems.append("stage.frames and data.frame_stride must be >= 1")
    if cfg.data.height % 16 or cfg.data.width % 16:
        problems.append("data.height and data.width must be multiples of 16")
    if cfg.train.attention not in ("auto", "flash", "efficient", "math"):
        problems.append("train.attention must be auto | flash | efficient | math")
    if not 0 <= cfg.train.reference_dropout < 1 or not 0 <= cfg.train.ema_decay < 1:
        problems.append("train.reference_dropout and train.ema_decay must be in [0, 1)")
    if cfg.train.max_steps < 1 or cfg.train.batch_size < 1 or cfg.train.grad_accum < 1:
        problems.append("train.max_steps, train.batch_size and train.grad_accum must be >= 1")
    if cfg.checkpoint.export_dtype not in ("float32", "bfloat16", "float16"):
        problems.append("checkpoint.export_dtype must be float32 | bfloat16 | float16")
    if problems:
        raise ValueError("bad training config: " + "; ".join(problems))
