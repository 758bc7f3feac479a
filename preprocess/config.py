"""The preprocessing job's typed config (presets in ``jobs/preprocess/*.yaml``).

Precedence: these defaults < the YAML preset < ``section.key=value`` overrides on the command
line. The resolved config is written to ``OUT/config.yaml`` and into every clip's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """Registered backend: ``movenet`` | ``precomputed`` (``dwpose`` in a later release)."""
    model: str = ""
    """ONNX model path of the pose backend (MoveNet MultiPose for ``movenet``)."""
    detector: str = ""
    """Person-detector ONNX path for top-down backends (DWPose's ``yolox_l.onnx``)."""
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
    """Registered backend: ``dis`` (OpenCV DIS) | ``pwcnet`` (later release)."""
    preset: str = "medium"
    """DIS quality: ``ultrafast`` | ``fast`` | ``medium``."""
    weights: str = ""
    """Checkpoint path for learned backends (PWC-Net)."""


@dataclass
class DepthConfig:
    """Relative depth used to rank characters front to back."""

    backend: str = "heuristic"
    """``heuristic`` (no depth map: lower feet = nearer) | ``depth_anything`` (later release)."""
    model: str = ""
    """Local folder or hub id of the depth model."""


@dataclass
class GeometryConfig:
    """Parameters of DESIGN §3. Training and inference read them back from the dataset."""

    map_downscale: int = 4
    """Maps (flow, masks, depth order) are stored at the stored resolution divided by this."""
    keypoint_threshold: float = 0.3
    """Keypoints with a lower score are not drawn into skeletons."""
    min_keypoints: int = 3
    """A character counts as present in a frame with at least this many confident body
    (COCO 0..16) keypoints."""
    limb_width: float = 0.01
    """Skeleton line thickness as a fraction of the target frame's short side."""
    dilation: float = 0.05
    """Diameter of the dilation disc as a fraction of the target frame's short side."""
    order_levels: int = 4
    """K in the depth-order levels L_r = (K - r) / K (r < K), 1 / K beyond."""
    flow_scale: float = 10.0
    """s in the flow guider input (1 - M) * F / s + M: pixels per frame mapped to 1.0."""


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
class PreprocessConfig:
    """One preprocessing job: raw videos in, WebDataset shards + Parquet statistics out."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
