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
    """Registered backend: ``movenet`` | ``topdown`` | ``precomputed`` | ``dwpose``."""
    model: str = ""
    """ONNX model path of the pose backend (MoveNet MultiPose for ``movenet``, MoveNet
    SinglePose Thunder for ``topdown``, DWPose's ``dw-ll_ucoco_384.onnx`` for ``dwpose``)."""
    detector: str = ""
    """Person-detector ONNX path for top-down backends (NanoDet-m for ``topdown``, DWPose's
    ``yolox_l.onnx`` for ``dwpose``)."""
    detector_tiles: bool = True
    """``topdown``: NanoDet also looks at overlapping squares along the frame's long side
    (small people seen larger; one more detector run per square)."""
    box_sources: list[str] = field(default_factory=lambda: ["nanodet", "multipose"])
    """``topdown``: where person boxes come from, merged: ``nanodet`` (``pose.detector``) and/or
    ``multipose`` (MoveNet MultiPose, ``pose.multipose``, at ``pose.multipose_sizes``)."""
    multipose: str = ""
    """``topdown``: MoveNet MultiPose ONNX path, a person-box source (``box_sources``)."""
    multipose_sizes: list[int] = field(default_factory=lambda: [256])
    """``topdown``: long sides at which MultiPose looks for person boxes (small: people
    filling the frame; large: small pedestrians)."""
    detect_every: int = 1
    """``topdown``: box propagation. The box sources run on every N-th frame of a clip (and
    after a frame without people); on the frames between, each person's box is carried from
    the previous frame's keypoints, so Thunder runs once per person and the box models not
    at all; a person entering is found at the next key frame. 1: boxes on every frame."""
    box_merge_iou: float = 0.9
    """``topdown``: IoU above which the weaker of two merged person boxes is dropped (high:
    overlapping people keep their boxes; OKS-NMS removes duplicates after the keypoints)."""
    crop_padding: float = 1.1
    """``topdown``: a person box is enlarged by this factor into Thunder's square crop."""
    crop_mask: float = 1.25
    """``topdown``: blacken Thunder's crop outside the person box enlarged by this factor, so
    a neighbour filling the square crop is not taken for the person (0: off)."""
    retry_containment: float = 0.8
    """``topdown``: when fewer of a person's confident body points than this fraction lie in
    its box, Thunder is run again on the box's upper half (the crop's centre fell on another
    person: someone behind a neighbour) and the better-fitting answer is kept."""
    flip_test: bool = False
    """``topdown``: average Thunder on each crop and on its mirror image (twice the cost)."""
    fuse_duplicates: bool = True
    """``topdown``: each person kept by the OKS-NMS takes the score-weighted mean position of
    every body point over its duplicates (the answers of overlapping boxes)."""
    hand_model: str = ""
    """``topdown``: MediaPipe hand landmark ONNX path for the hand points 91..132 (empty: no
    hands, their scores stay 0)."""
    hand_min_size: float = 40.0
    """``topdown``: estimated hand length (wrist to fingertip, frame pixels) below which a hand
    is not looked for (the model cannot see it; its points stay at score 0)."""
    hand_score: float = 0.5
    """``topdown``: hand presence score below which a looked-for hand counts as absent."""
    device: str = "auto"
    """``auto`` (CUDA when onnxruntime offers it, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N``.
    ``movenet`` and ``dwpose`` run on it through onnxruntime (``cuda`` needs onnxruntime-gpu);
    ``precomputed`` runs no model and takes ``auto`` or ``cpu`` only."""
    batch_size: int = 16
    """``dwpose``: frames per detector call and person crops per pose-model call, as far as
    each ONNX file's batch dimension allows (a fixed batch of 1 runs one at a time)."""
    detector_nms: float = 0.45
    """``dwpose``, ``topdown``: IoU above which the detector's weaker overlapping person box
    is dropped."""
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
    crf: int = 23
    """x264 constant rate factor of the stored clip video (lower = better quality). With
    ``ultrafast``, 23 gives 39.4 dB against the stored frames (medium/18: 40.4) at 9.4 KB per
    640x1138 frame, which keeps a whole sample under 60 KB per frame; table and choice:
    docs/cluster.md "Encoder settings"."""
    x264_preset: str = "ultrafast"
    """x264 speed/compression preset: ``ultrafast`` costs about 5 CPU ms per 640x1138 frame,
    a fifth of ``medium`` (29 ms), for 1.35x the mp4 bytes of medium/18 at CRF 23
    (docs/cluster.md, measured by ``benchmarks/encoder.py``)."""
    flow_step: float = 1 / 16
    """Flow is rounded to multiples of this many stored pixels before the float16 cast
    (error <= step / 2 = 1/32 px, far below any flow estimator's error; ``flow.npz`` several
    times smaller, and 1/16 a third smaller and faster to deflate than 1/32: docs/cluster.md
    "Encoder settings"). 0 keeps plain float16."""


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
    """Fused and separate layouts: CPUs per decode task (one video per task: decoding, then
    the encode stage's x264 of each clip); decode runs in tasks, as many as CPUs allow."""
    geometry_cpus: float = 1.0
    """Fused and separate layouts: CPUs per geometry + pack task (one clip per task)."""
    pose_actors: int = 1
    """Separate layout: pose actors (each loads the model once). With GPUs: GPUs x actors per
    GPU. The ``run.<stage>_*`` keys also size a fused actor (``run.fused_actors``)."""
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
    extractors: str = "auto"
    """How the stages are laid out on Ray: ``inline`` (every stage of a video in one actor,
    each holding every model: no frame crosses the object store; sized by ``run.inline_*``) |
    ``fused`` (decode tasks, then one actor pool holding every model on its device, so a
    clip's frames cross the object store once) | ``separate`` (decode tasks, then one actor
    pool per model stage, each sized by its own ``run.<stage>_*`` keys) | ``auto``:
    ``fused`` when the cluster has GPUs (one copy of a clip per GPU, decoding on the other
    cores), ``inline`` without (docs/cluster.md, "Layouts")."""
    inline_actors: int = 0
    """Actors of the ``inline`` layout (each loads every model and runs one video at a time).
    0: as many as the cluster's CPUs hold at ``run.inline_cpus`` each."""
    inline_cpus: float = 1.0
    """CPUs per ``inline`` actor (its codecs and models run on that many threads)."""
    fused_actors: int = 0
    """Fused actors (each loads every model; with GPUs: GPUs x actors per GPU). 0: the
    largest ``run.<stage>_actors`` of the fused stages. A fused actor reserves the sum of
    their ``run.<stage>_cpus`` and of their ``run.<stage>_gpus`` (at most 1)."""
    writers: int = 0
    """Fused and separate layouts: writer actors, each committing whole videos into its own
    shards (``shard-wNNN-*``) and Parquet files, so no sample passes through the driver. 0: one
    per node that has CPUs. (An inline actor writes its own shards.)"""
    clips_per_batch: int = 1
    """Clips handed to a model actor per call (``map_batches`` batch size); each clip is up to
    ``decode.clip_frames`` frames, and the backend batches frames within it."""
    video_timeout_s: float = 0.0
    """A video still unfinished this many seconds after its decoding started is cut off and
    recorded as failed at the stage it was in (0: no limit)."""
    max_retries: int = 3
    """Ray retries of a crashed task and restarts of a crashed actor; and passes over the
    videos not yet committed when a pass ends early (a lost node, a dead writer): those are
    run again up to this many times, then recorded as failed at stage ``job``."""


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
