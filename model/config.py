"""The model's typed config and its named presets (``tiny`` for tests, ``sd15`` full size).

A :class:`ModelConfig` fixes every architecture choice of the composed model (docs/design.md §5):
the two SD-1.5-shaped UNets, the VAE, the CLIP image encoder, the four guiders, the optional
AnimateDiff motion modules and the noise schedule. It is what a model folder stores as
``config.yaml`` (see :mod:`model.folder`), so a folder can be rebuilt without the code that
wrote it. Sampling settings (steps, guidance, windows) are a separate :class:`SamplingConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preprocess.config import DepthConfig, FlowConfig, PoseConfig
from preprocess.geometry.canvas import GUIDER_INPUTS
from preprocess.geometry.config import GeometryConfig


@dataclass
class UNetConfig:
    """Shape of the denoising UNet and the ReferenceNet (both use the same one)."""

    block_out_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])
    """Channels per resolution level; the first is the width ``c_multi`` is projected to."""
    down_block_types: list[str] = field(
        default_factory=lambda: ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    )
    """diffusers down-block classes, one per level."""
    up_block_types: list[str] = field(
        default_factory=lambda: ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    )
    """diffusers up-block classes, one per level."""
    layers_per_block: int = 2
    """ResNet (and attention) layers per down block (up blocks get one more)."""
    attention_head_dim: int = 8
    """diffusers' name for the number of attention heads of SD 1.5's UNet."""
    cross_attention_dim: int = 768
    """Width of the cross-attention context: the CLIP image embedding's projection dim."""
    norm_num_groups: int = 32
    """GroupNorm groups; must divide every channel count (motion modules use it too)."""
    sample_size: int = 64
    """Nominal latent size stored in the diffusers config (any multiple of 8 works)."""


@dataclass
class VaeConfig:
    """The SD VAE (``AutoencoderKL``); four levels give the ÷8 latent geometry."""

    block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 512])
    """Channels per level (4 levels: 3 downsamplings, latents at 1/8 of the pixels)."""
    layers_per_block: int = 2
    """ResNet layers per encoder level."""
    latent_channels: int = 4
    """Channels of the latent image (the UNets' input and output channels)."""
    norm_num_groups: int = 32
    """GroupNorm groups."""
    sample_size: int = 512
    """Nominal image size stored in the diffusers config."""
    scaling_factor: float = 0.18215
    """Latents are ``encoder mean * scaling_factor`` (SD 1.5's value)."""


@dataclass
class ImageEncoderConfig:
    """CLIP vision tower with projection (transformers ``CLIPVisionModelWithProjection``)."""

    hidden_size: int = 1024
    """Transformer width (ViT-L/14: 1024)."""
    intermediate_size: int = 4096
    """MLP width."""
    num_hidden_layers: int = 24
    """Transformer layers."""
    num_attention_heads: int = 16
    """Attention heads."""
    image_size: int = 224
    """Input resolution the reference image is resized and centre-cropped to."""
    patch_size: int = 14
    """ViT patch size."""
    projection_dim: int = 768
    """Image-embedding width; must equal ``unet.cross_attention_dim``."""


GUIDER_NAMES = GUIDER_INPUTS
"""The four guiders of the paper (pose, flow, order, reference_pose), in ``c_multi``'s
summation order: the guider inputs of :mod:`preprocess.geometry.canvas`, by the same names."""


@dataclass
class GuiderConfig:
    """The guiders (pose, flow, depth order, reference pose): one structure, 8 convs each."""

    names: list[str] = field(default_factory=lambda: list(GUIDER_NAMES))
    """The guiders the model has (of pose, flow, order, reference_pose; at least one of the
    per-frame ones: pose, flow, order). A guider left out is not built, not trained and not
    fed: the paper's Table 4 ablation variants are trained without one
    (``stage.guiders`` in training, docs/train.md)."""
    block_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    """Channels of the conv stack: conv_in, then (conv, stride-2 conv) per step, then the
    zero-initialised conv_out. Four entries = 8 conv layers and a ÷8 downsampling."""
    pose_channels: int = 3
    """Pose map: RGB skeleton rendering."""
    flow_channels: int = 2
    """Flow guider input: (1 - M) * F / s + M (docs/design.md §3)."""
    order_channels: int = 1
    """Depth-order map."""
    reference_pose_channels: int = 3
    """Pose map of the reference image (same renderer as the driving poses)."""


@dataclass
class MotionConfig:
    """AnimateDiff motion modules of the denoising UNet (stage 2)."""

    enabled: bool = False
    """False: stage-1 model (a 2D UNet over frames). True: ``UNetMotionModel`` over clips."""
    num_attention_heads: int = 8
    """Heads of the temporal attention (AnimateDiff v2: 8)."""
    max_seq_length: int = 32
    """Length of the sinusoidal frame-position table (AnimateDiff v2: 32)."""
    use_mid_block: bool = True
    """Motion module in the middle block (v2 has one, v1 does not)."""
    transformer_layers_per_block: int = 1
    """Temporal transformer blocks per motion module (AnimateDiff: 1)."""


@dataclass
class SchedulerConfig:
    """The diffusion noise schedule shared by training (noising) and sampling (DDIM)."""

    num_train_timesteps: int = 1000
    """Discrete training timesteps."""
    beta_start: float = 0.00085
    """First beta (SD 1.5)."""
    beta_end: float = 0.012
    """Last beta (SD 1.5)."""
    beta_schedule: str = "scaled_linear"
    """diffusers beta schedule name (SD 1.5: scaled_linear)."""
    prediction_type: str = "epsilon"
    """What the UNet predicts: ``epsilon`` (SD 1.5) | ``v_prediction``."""
    rescale_betas_zero_snr: bool = False
    """Rescale the schedule to zero terminal SNR (use with v_prediction)."""
    timestep_spacing: str = "leading"
    """DDIM timestep spacing: ``leading`` (SD 1.5) | ``trailing`` | ``linspace``."""
    steps_offset: int = 1
    """Offset added to DDIM timesteps (SD 1.5: 1)."""


@dataclass
class WeightSources:
    """Where a model folder's initial weights came from (provenance; empty = random init)."""

    unet: str = ""
    """SD 1.5 UNet: a diffusers folder (``unet/``, or the pipeline root) or a single file."""
    vae: str = ""
    """SD VAE: a diffusers folder (``vae/``, or the pipeline root) or a single file."""
    image_encoder: str = ""
    """CLIP vision encoder folder (e.g. sd-image-variations-diffusers ``image_encoder/``)."""
    motion_module: str = ""
    """AnimateDiff v2: ``mm_sd_v15_v2.ckpt`` or a diffusers ``MotionAdapter`` folder."""
    init_from: str = ""
    """A model folder this one continues (set by the trainer)."""


@dataclass
class PreprocessingRecord:
    """Which extractors made the model's training data, and with which settings.

    Set by the trainer at every export from the training data's own metadata (its
    ``config.yaml``, ``backends.json`` and the clips' ``backends``); empty in folders of
    ``python -m model.init`` (not trained on any data). ``python -m model.animate`` and
    ``python -m train.evaluate`` default to these extractors (docs/model.md, "Inference uses
    the training data's extractors")."""

    data: str = ""
    """The preprocessing output the model was (last) trained on; empty: not trained on data."""
    pose: PoseConfig | None = None
    """The data's resolved ``pose`` section (backend, weights, person score, input size,
    tracking); None when not trained on data."""
    flow: FlowConfig | None = None
    """The data's resolved ``flow`` section (inference feeds zero flow; kept as provenance)."""
    depth: DepthConfig | None = None
    """The data's resolved ``depth`` section (the depth order of the reference image at
    inference comes from this backend)."""
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The data's ``backends.json``: per kind (pose, flow, depth) the backend's name, weights
    path and sha256, and what else decides its output."""

    @property
    def recorded(self) -> bool:
        """True once the trainer recorded the training data's extractors."""
        return self.pose is not None and self.depth is not None


@dataclass
class ModelConfig:
    """The composed animation model (docs/design.md §5). Stored as ``config.yaml`` in model folders."""

    preset: str = "sd15"
    """Preset this config started from (``tiny`` | ``sd15``); informational."""
    unet: UNetConfig = field(default_factory=UNetConfig)
    """Shape of the denoising UNet and the ReferenceNet (both use the same one)."""
    vae: VaeConfig = field(default_factory=VaeConfig)
    """The SD VAE (frozen)."""
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """The CLIP image encoder of the reference (frozen)."""
    guiders: GuiderConfig = field(default_factory=GuiderConfig)
    """The four guiders (pose, flow, depth order, reference pose)."""
    motion: MotionConfig = field(default_factory=MotionConfig)
    """AnimateDiff motion modules of the denoising UNet (stage 2)."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """The noise schedule shared by training and DDIM sampling."""
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    """Mask, depth-order and flow-scale parameters the guiders are trained with (the
    dataset's ``geometry``); inference builds its guider inputs with the same values."""
    weights: WeightSources = field(default_factory=WeightSources)
    """Where the initial weights came from (provenance; empty = random init)."""
    preprocessing: PreprocessingRecord = field(default_factory=PreprocessingRecord)
    """The extractors (pose, flow, depth backends and settings) that made the training data;
    inference defaults to them. Empty until trained."""
    seed: int = 0
    """Seed of the random initialisation (guiders, and everything for random presets)."""


@dataclass
class SamplingConfig:
    """Inference settings (paper §5: DDIM 50 steps, CFG 1.5, 16-frame windows, stride 8)."""

    steps: int = 50
    """DDIM steps."""
    guidance_scale: float = 1.5
    """Classifier-free guidance; 1.0 runs the conditional branch only."""
    eta: float = 0.0
    """DDIM eta (0: deterministic given the initial noise)."""
    window: int = 16
    """Frames per denoising window (the stage-2 training length)."""
    stride: int = 8
    """Start-to-start distance of consecutive windows; overlaps are averaged."""
    height: int = 896
    """Output height in pixels (multiple of 8 and of the UNet's downsampling)."""
    width: int = 640
    """Output width in pixels."""
    seed: int = 0
    """Seed of the initial noise."""


def tiny_config() -> ModelConfig:
    """A CPU-fast model with the full model's structure and random weights (tests, demos).

    Its outputs are meaningless noise: it exists to run every code path quickly.
    """
    return ModelConfig(
        preset="tiny",
        unet=UNetConfig(
            block_out_channels=[32, 64],
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            layers_per_block=2,
            attention_head_dim=4,
            cross_attention_dim=32,
            norm_num_groups=8,
            sample_size=8,
        ),
        vae=VaeConfig(
            block_out_channels=[16, 16, 32, 32],
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
        ),
        image_encoder=ImageEncoderConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        guiders=GuiderConfig(block_out_channels=[8, 8, 16, 16]),
        motion=MotionConfig(num_attention_heads=2),
    )


def sd15_config() -> ModelConfig:
    """Full size: SD 1.5 UNets and VAE, ViT-L/14 image encoder, AnimateDiff v2 modules."""
    return ModelConfig(preset="sd15")


PRESETS = {"tiny": tiny_config, "sd15": sd15_config}


def preset_config(name: str, *, motion: bool = False) -> ModelConfig:
    """The named preset's config; ``motion=True`` turns on the stage-2 motion modules."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    cfg.motion.enabled = motion
    return cfg


def check_config(cfg: ModelConfig) -> None:
    """Raise ``ValueError`` when the parts of ``cfg`` cannot fit together."""
    u = cfg.unet
    problems = []
    if cfg.image_encoder.projection_dim != u.cross_attention_dim:
        problems.append("image_encoder.projection_dim must equal unet.cross_attention_dim")
    if len(u.down_block_types) != len(u.block_out_channels) or len(u.up_block_types) != len(
        u.block_out_channels
    ):
        problems.append("unet block types need one entry per block_out_channels level")
    if any(c % u.norm_num_groups for c in u.block_out_channels):
        problems.append("unet.norm_num_groups must divide every unet channel count")
    if any(c % cfg.motion.num_attention_heads for c in u.block_out_channels):
        problems.append("motion.num_attention_heads must divide every unet channel count")
    if len(cfg.vae.block_out_channels) != 4 or len(cfg.guiders.block_out_channels) != 4:
        problems.append("vae and guiders need 4 levels (latents at 1/8 of the pixels)")
    names = cfg.guiders.names
    if set(names) - set(GUIDER_NAMES) or len(set(names)) != len(names):
        problems.append(f"guiders.names {names} must name distinct guiders of {GUIDER_NAMES}")
    if not set(names) & {"pose", "flow", "order"}:
        problems.append("guiders.names needs at least one per-frame guider (pose, flow, order)")
    if problems:
        raise ValueError("inconsistent model config: " + "; ".join(problems))
