"""The preprocessing job's typed config (presets in ``jobs/preprocess/*.yaml``).

Precedence: these defaults < the YAML preset < ``section.key=value`` overrides on the command
line. The resolved config is written to ``OUT/config.yaml`` and into every clip's metadata.
The ``geometry`` section (:class:`GeometryConfig`) belongs to the pure geometry layer,
:mod:`preprocess.geometry.config`, and is re-exported here. :func:`read_output_config` reads
an output's config back (the trainer takes its geometry from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from preprocess.geometry.config import GeometryConfig as GeometryConfig  # re-exported
from shards.config import ConfigError, config_from_dict
from shards.schema import CONFIG_FILE, check_format_version
from shards.storage import read_text, uri_join


@dataclass
class DecodeConfig:
    """How raw videos become clips of stored frames."""

    short_side: int = 640
    """Stored resolution: the frame's short side in pixels (aspect kept, both sides even)."""
    upscale: bool = False
    """Upscale videos whose short side is below ``short_side``. Off: small videos keep their
    size (rounded down to even), so no detail is invented; training resizes anyway."""
    max_fps: float = 30.0
    """Frame-rate cap. Faster videos are subsampled to the nearest source frames."""
    clip_frames: int = 64
    """Maximum frames per clip. Longer shots are split into consecutive clips."""
    min_clip_frames: int = 16
    """Shots (or shot tails) shorter than this are dropped (stage 2 trains on 16 frames)."""
    max_frames: int = 0
    """Stop after this many stored frames per video (0: the whole video)."""
    cut_threshold: float = 0.5
    """Shot-cut detector: a cut is declared between two consecutive stored frames whose
    HSV-histogram Bhattacharyya distance exceeds this (0 = identical, 1 = disjoint)."""
    chunk_frames: int = 16
    """Frames fetched per decord ``get_batch`` call (small chunks are faster than one huge)."""


@dataclass
class PoseConfig:
    """Multi-person whole-body pose extraction and tracking."""

    backend: str = "movenet"
    """Registered backend: ``movenet`` | ``precomputed`` | ``dwpose``."""
    model: str = ""
    """ONNX model path of the pose backend (MoveNet MultiPose for ``movenet``, DWPose's
    ``dw-ll_ucoco_384.onnx`` for ``dwpose``)."""
    detector: str = ""
    """Person-detector ONNX path for top-down backends (DWPose's ``yolox_l.onnx``)."""
    device: str = "auto"
    """``auto`` (CUDA when onnxruntime offers it, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N``.
    ``movenet`` and ``dwpose`` run on it through onnxruntime (``cuda`` needs onnxruntime-gpu);
    ``precomputed`` runs no model and takes ``auto`` or ``cpu`` only."""
    batch_size: int = 16
    """``dwpose``: frames per detector call and person crops per pose-model call, as far as
    each ONNX file's batch dimension allows (a fixed batch of 1 runs one at a time)."""
    detector_nms: float = 0.45
    """``dwpose``: IoU above which the detector's weaker overlapping person box is dropped."""
    min_score: float = 0.3
    """Keypoint confidence below which a keypoint counts as absent."""
    person_score: float = 0.2
    """Detection score below which a detected person is discarded."""
    input_size: int = 512
    """Long side, in pixels, of the image fed to MoveNet (rounded up to a multiple of 32)."""
    sidecar_suffix: str = ".pose.npz"
    """``precomputed``: the sidecar next to ``video.mp4`` is ``video`` + this suffix."""
    require_torso: bool = True
    """Drop detections without a confident shoulder or hip (limb fragments; see
    ``preprocess.pose.cleanup``)."""
    nms_oks: float = 0.5
    """Drop a detection whose keypoint similarity (OKS) with a stronger one in the same frame
    reaches this (duplicates). 0 disables."""
    track_max_gap: int = 8
    """Frames a track may go unmatched before a new detection can no longer join it."""
    track_reid_iou: float = 0.5
    """A track unmatched for longer than ``track_max_gap`` resumes with a detection whose box
    overlaps its last box at least this much (IoU); 0 disables."""
    track_min_frames: int = 4
    """Tracks seen in fewer frames of a clip are dropped as spurious detections."""
    track_min_iou: float = 0.2
    """Minimum box IoU (keypoint bounding boxes) for a detection to continue a track."""
    threads: int = 0
    """onnxruntime intra-op threads (0: onnxruntime's default)."""


@dataclass
class FlowConfig:
    """Backward optical flow between consecutive stored frames, at the map resolution."""

    backend: str = "dis"
    """Registered backend: ``dis`` (OpenCV DIS) | ``pwcnet`` (MMFlow's PWC-Net, PyTorch)."""
    preset: str = "medium"
    """DIS quality: ``ultrafast`` | ``fast`` | ``medium``."""
    weights: str = ""
    """Checkpoint path for learned backends (MMFlow's PWC-Net ``.pth``)."""
    device: str = "auto"
    """``auto`` (CUDA when torch sees a GPU, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N`` for
    ``pwcnet``; ``dis`` runs on the CPU only and takes ``auto`` or ``cpu``."""
    batch_size: int = 8
    """Learned backends: frame pairs per forward pass."""


@dataclass
class DepthConfig:
    """Relative depth used to rank characters front to back."""

    backend: str = "heuristic"
    """``heuristic`` (no depth map: lower feet = nearer) | ``depth_anything`` (transformers)."""
    model: str = ""
    """Local folder or hub id of the depth model (``depth_anything``: empty means the weights
    manager's folder if fetched, else the hub id ``LiheYoung/depth-anything-small-hf``)."""
    device: str = "auto"
    """``auto`` (CUDA when torch sees a GPU, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N`` for
    ``depth_anything``; ``heuristic`` runs no model and takes ``auto`` or ``cpu``."""
    batch_size: int = 8
    """Frames per forward pass."""
    fp16: bool = True
    """Half precision on CUDA (always float32 on the CPU)."""


@dataclass
class ShardConfig:
    """WebDataset shard writing."""

    max_clips: int = 256
    """Clips per shard before a new shard is started."""
    max_bytes: int = 1 << 30
    """Bytes per shard before a new shard is started."""
    crf: int = 18
    """x264 constant rate factor of the stored clip video (lower = better quality)."""
    x264_preset: str = "medium"
    """x264 speed/compression preset."""
    flow_step: float = 1 / 32
    """Flow is rounded to multiples of this many stored pixels before the float16 cast
    (error <= step / 2, far below any flow estimator's error; about 6x smaller ``flow.npz``).
    0 keeps plain float16."""


@dataclass
class RunConfig:
    """How the job runs: in-process or on Ray, and the Ray resources of each stage.

    These knobs change speed and placement, never what is written: a re-run on the same
    output may change them freely (``run.*`` is left out of the config comparison).
    """

    runner: str = "ray"
    """``ray``: the Ray Data streaming job (a local Ray instance unless a cluster is given) |
    ``local``: everything in this process, one video after another."""
    address: str = ""
    """Ray cluster to join: ``auto``, ``ray://host:10001`` or ``host:6379``. Empty: the
    cluster of ``RAY_ADDRESS`` (set by ``ray job submit``), else a new local instance."""
    num_cpus: int = 0
    """Logical CPUs of a new local instance (0: enough for every actor and one task, at least
    the machine's cores). Ignored on a cluster."""
    decode_cpus: float = 1.0
    """CPUs per decode task (one video per task); decode runs in tasks, as many as CPUs allow."""
    geometry_cpus: float = 1.0
    """CPUs per geometry + encode task (one clip per task)."""
    pose_actors: int = 1
    """Pose actors (each loads the model once). With GPUs: GPUs x actors per GPU."""
    pose_gpus: float = 0.0
    """GPUs per pose actor (0.5: two actors share a GPU)."""
    pose_cpus: float = 1.0
    """CPUs per pose actor."""
    flow_actors: int = 1
    """Flow actors."""
    flow_gpus: float = 0.0
    """GPUs per flow actor."""
    flow_cpus: float = 1.0
    """CPUs per flow actor."""
    depth_actors: int = 1
    """Depth actors."""
    depth_gpus: float = 0.0
    """GPUs per depth actor."""
    depth_cpus: float = 0.25
    """CPUs per depth actor (the weightless heuristic does no work here)."""
    clips_per_batch: int = 1
    """Clips handed to a model actor per call (``map_batches`` batch size); each clip is up to
    ``decode.clip_frames`` frames, and the backend batches frames within it."""
    video_timeout_s: float = 0.0
    """A video still unfinished this many seconds after its decoding started is cut off and
    recorded as failed at the stage it was in (0: no limit)."""
    max_retries: int = 3
    """Ray retries of a crashed task, and restarts of a crashed actor (then the job fails)."""


@dataclass
class PreprocessConfig:
    """One preprocessing job: raw videos in, WebDataset shards + Parquet statistics out."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    run: RunConfig = field(default_factory=RunConfig)


def read_output_config(root: str) -> PreprocessConfig:
    """The resolved config a preprocessing output was written with (``ROOT/config.yaml``, a
    local path or a URI), its format version checked.

    Raises FileNotFoundError naming the file when ``root`` is not a preprocessing output,
    :class:`~shards.schema.FormatVersionError` when it was written in another format version,
    and ConfigError when the file does not describe a :class:`PreprocessConfig`.
    """
    path = uri_join(root, CONFIG_FILE)
    text = read_text(path)
    if text is None:
        raise FileNotFoundError(f"{path} not found: not a preprocessing output")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config_from_dict(PreprocessConfig, check_format_version(data, path))
