"""``python -m model.animate``: animate a reference image with a driving video or pose file.

    python -m model.animate --checkpoint out/model --reference ref.png \\
        --driving dance.mp4 --out out/result.mp4 [--side-by-side out/sbs.mp4] \\
        [--pose-model models/movenet_multipose.onnx] [--steps 50] [--guidance-scale 1.5] \\
        [--height 896 --width 640] [--max-frames 64] [key.sub=value ...]

The files become canvas-space inputs here (:func:`prepare`: the reference image cropped to the
canvas, its and the driving video's poses, characters matched and ordered); the guider inputs
are rendered a chunk at a time (:func:`model.inputs.guider_arrays`) and
:func:`model.pipeline.generate` — the one inference sequence, shared with training validation
and ``python -m train.evaluate`` — animates; the frames go to an H.264 MP4
(:func:`shards.video.write_video`).

``--driving`` is a video (poses from the pose backend, ``pose.backend``; with
``pose.backend=precomputed`` from its ``.pose.npz`` sidecar) or a pose file: a sidecar
``.pose.npz`` (``keypoints`` [T, P, K, 3]) or an ``.npy`` of [T, P, 133, 3] such as a shard
sample's ``pose.npy``; pose files need the pixel size their coordinates refer to
(``--pose-size HxW``, or a video of the same stem next to them). The reference image's pose
comes from the same backend, or from ``--reference-pose`` (an ``.npy`` of [P, 133, 3] in the
image's pixels). Dotted overrides reach every field of :class:`AnimateConfig`
(``sampling.eta=0.5``, ``pose.input_size=384``, ...); ``--help`` lists them all. This entry
point is the one module of ``model/`` that may use extractor backends (pose, depth). See
docs/model.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from model.composed import AnimationModel
from model.config import SamplingConfig
from model.folder import load_model_folder
from model.guiders import Conditions
from model.inputs import guider_arrays, match_characters, track_priority
from model.pipeline import generate
from preprocess.config import DepthConfig, PoseConfig
from preprocess.depth import create_depth_backend
from preprocess.devices import DTYPES, torch_device, torch_dtype
from preprocess.geometry.canvas import Crop, reference_nearness
from preprocess.geometry.layout import pad_to_wholebody
from preprocess.pose import create_pose_backend, read_sidecar, render_pose, sidecar_path, track
from preprocess.weights import assets_dir
from shards.config import ConfigCLI
from shards.logs import setup_logging
from shards.video import probe_video, read_video, write_video

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SAMPLING_FLAGS = ("steps", "guidance_scale", "height", "width", "seed", "window", "stride")
"""``sampling.*`` keys that also have a flag (``--steps``, ``--guidance-scale``, ...)."""


@dataclass
class AnimateConfig:
    """One animation job."""

    checkpoint: str = ""
    """Model folder (python -m model.init, or a training export)."""
    reference: str = ""
    """Reference image (any format OpenCV reads)."""
    driving: str = ""
    """Driving video, or pose file (.pose.npz sidecar, .npy [T, P, 133, 3])."""
    out: str = ""
    """Output video (.mp4, H.264)."""
    side_by_side: str = ""
    """Optional second video: reference | pose map | result."""
    reference_pose: str = ""
    """Optional .npy [P, 133, 3] keypoints of the reference image (else detected)."""
    pose_size: str = ""
    """``HxW`` pixel size of a pose file's coordinates (else probed from a sibling video)."""
    fps: float = 0.0
    """Output frame rate (0: the driving video's, 30 for pose files)."""
    max_frames: int = 0
    """Animate at most this many driving frames (0: all)."""
    device: str = "auto"
    """``auto`` (CUDA when available) | ``cpu`` | ``cuda`` | ``cuda:1`` ..."""
    dtype: str = "auto"
    """``auto`` (bfloat16 on CUDA, float32 on CPU) | ``float32`` | ``float16`` | ``bfloat16``."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """DDIM sampling: steps, guidance, windows, canvas size, seed."""
    pose: PoseConfig = field(default_factory=PoseConfig)
    """Pose backend for the driving video and the reference image (default MoveNet)."""
    depth: DepthConfig = field(default_factory=DepthConfig)
    """Depth backend for the reference image's front-to-back order (default: none, the feet
    heuristic)."""


def build_cli() -> tuple[ConfigCLI[AnimateConfig], argparse.ArgumentParser]:
    """The command line: flags for the common keys, ``KEY=VALUE`` for every key of
    :class:`AnimateConfig` (all listed by ``--help``)."""
    cli = ConfigCLI(AnimateConfig, preset="none")
    parser = cli.parser("python -m model.animate", __doc__.split("\n")[0])
    for name in ("--checkpoint", "--reference", "--driving", "--out"):
        cli.flag(parser, name, required=True)
    for name in ("--side-by-side", "--reference-pose", "--pose-size"):
        cli.flag(parser, name)
    cli.flag(parser, "--pose-backend", key="pose.backend")
    cli.flag(parser, "--pose-model", key="pose.model")
    for name in ("--max-frames", "--fps", "--device"):
        cli.flag(parser, name)
    cli.flag(parser, "--dtype", choices=["auto", *DTYPES])
    for name in SAMPLING_FLAGS:
        cli.flag(parser, f"--{name.replace('_', '-')}", key=f"sampling.{name}")
    return cli, parser


def parse_args(argv: Sequence[str] | None) -> AnimateConfig:
    """The :class:`AnimateConfig` of a command line (defaults < flags < overrides)."""
    cli, parser = build_cli()
    return cli.config(parser.parse_args(argv))


# ---- inputs ------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read reference image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pose_file_size(cfg: AnimateConfig) -> tuple[int, int]:
    if cfg.pose_size:
        h, w = (int(v) for v in cfg.pose_size.lower().split("x"))
        return h, w
    stem = (
        cfg.driving.removesuffix(cfg.pose.sidecar_suffix).removesuffix(".npy").removesuffix(".pose")
    )
    for suffix in VIDEO_SUFFIXES:
        if os.path.isfile(stem + suffix):
            return probe_video(stem + suffix)[0]
    raise ValueError(f"{cfg.driving}: give --pose-size HxW (no video of the same stem next to it)")


def _tracked(keypoints: np.ndarray, tracked: bool, pose: PoseConfig) -> np.ndarray:
    kps = pad_to_wholebody(keypoints)  # (T, P, 133, 3)
    if tracked:
        return kps
    return track([people[people[..., 2].max(-1) > 0] for people in kps], pose)


def driving_keypoints(cfg: AnimateConfig) -> tuple[np.ndarray, tuple[int, int], float]:
    """Tracked driving keypoints (T, P, 133, 3) in source pixels, the source size, the fps."""
    path, limit = cfg.driving, cfg.max_frames or None
    if path.lower().endswith(VIDEO_SUFFIXES):
        if cfg.pose.backend == "precomputed":
            kps, tracked = read_sidecar(sidecar_path(path, cfg.pose.sidecar_suffix))
            size, video_fps = probe_video(path)
            return _tracked(kps[:limit], tracked, cfg.pose), size, cfg.fps or video_fps
        frames, fps = read_video(path, cfg.max_frames)  # (T, H, W, 3)
        log.info("detecting poses in %d driving frames (%s)", len(frames), cfg.pose.backend)
        keypoints = create_pose_backend(cfg.pose).track_frames(frames)
        return keypoints, frames.shape[1:3], cfg.fps or fps
    if path.endswith(".npz"):
        kps, tracked = read_sidecar(path)
    elif path.endswith(".npy"):
        kps, tracked = np.load(path, allow_pickle=False).astype(np.float32), True
    else:
        raise ValueError(f"--driving {path}: expected a video ({VIDEO_SUFFIXES}), .npz or .npy")
    return _tracked(kps[:limit], tracked, cfg.pose), _pose_file_size(cfg), cfg.fps or 30.0


def reference_keypoints(cfg: AnimateConfig, image: np.ndarray) -> np.ndarray:
    """(P, 133, 3) keypoints of the reference image, in its own pixels (detected at full
    resolution, or read from ``--reference-pose``)."""
    if cfg.reference_pose:
        return pad_to_wholebody(np.load(cfg.reference_pose, allow_pickle=False)[None])[0]
    if cfg.pose.backend == "precomputed":
        raise ValueError(
            "pose.backend=precomputed cannot detect the reference's pose: "
            "pass --reference-pose or use a detecting backend (movenet)"
        )
    return create_pose_backend(cfg.pose).people(image[None])[0]


def default_pose_model(cfg: AnimateConfig) -> None:
    """MoveNet from the shared assets (:func:`preprocess.weights.assets_dir`, MCANIM_ASSETS)
    when no pose.model is configured."""
    if cfg.pose.backend != "movenet" or cfg.pose.model:
        return
    candidate = assets_dir() / "models" / "movenet_multipose.onnx"
    if candidate.is_file():
        cfg.pose.model = str(candidate)
        log.info("pose.model not set: using %s", candidate)


# ---- the job -----------------------------------------------------------------------------
@dataclass
class Prepared:
    """The canvas-space inputs of one job."""

    reference: np.ndarray  # (H, W, 3) uint8, cropped
    reference_kps: np.ndarray  # (P_r, 133, 3) canvas pixels
    driving_kps: np.ndarray  # (T, P_d, 133, 3) canvas pixels
    priority: np.ndarray  # (P_d,) front-to-back order of the driving tracks
    fps: float


def prepare(cfg: AnimateConfig, model: AnimationModel) -> Prepared:
    """Read the reference image and the driving poses, bring both to the sampling canvas,
    match characters and fix their front-to-back order."""
    size = (cfg.sampling.height, cfg.sampling.width)
    geo = model.cfg.geometry
    default_pose_model(cfg)
    image = read_image(cfg.reference)
    crop = Crop(image.shape[:2], size)
    reference = crop.image(image)
    ref_kps = crop.keypoints(reference_keypoints(cfg, image))
    kps, source_size, fps = driving_keypoints(cfg)
    driving = Crop(source_size, size).keypoints(kps)
    match = match_characters(ref_kps, driving, size, geo)
    depth = create_depth_backend(cfg.depth).clip_depth(reference[None], size)  # (1, H, W)
    nearness = reference_nearness(ref_kps, geo, None if depth is None else depth[0])
    priority = track_priority(match, nearness, driving, geo)
    log.info(
        "%d driving frames, %d tracks, %d reference characters, match %s, order %s",
        len(driving),
        driving.shape[1],
        len(ref_kps),
        match.tolist(),
        priority.tolist(),
    )
    return Prepared(reference, ref_kps, driving, priority, fps)


def animate(
    cfg: AnimateConfig, model: AnimationModel, progress: bool = True
) -> tuple[np.ndarray, Prepared]:
    """Generated frames (T, H, W, 3) uint8 and the prepared inputs: :func:`prepare`, then
    :func:`model.pipeline.generate` with the guider inputs rendered a chunk at a time."""
    job = prepare(cfg, model)
    size = (cfg.sampling.height, cfg.sampling.width)
    geo = model.cfg.geometry

    def conditions(start: int, stop: int) -> Conditions:
        arrays = guider_arrays(
            job.driving_kps[start:stop], job.reference_kps, job.priority, size, geo
        )
        return Conditions.from_arrays(arrays)

    frames = generate(
        model, job.reference, conditions, len(job.driving_kps), cfg.sampling, progress=progress
    )
    return frames, job


def side_by_side(frames: np.ndarray, job: Prepared, threshold: float) -> np.ndarray:
    """(T, H, 3W, 3): reference | pose map | result."""
    size = frames.shape[1:3]
    poses = [render_pose(k, size, size, threshold) for k in job.driving_kps]
    return np.stack(
        [np.concatenate([job.reference, p, f], axis=1) for p, f in zip(poses, frames, strict=True)]
    )


def run(cfg: AnimateConfig) -> None:
    """Load the model, animate, write the video(s)."""
    device = torch_device(cfg.device)
    model = load_model_folder(cfg.checkpoint, device=device, dtype=torch_dtype(cfg.dtype, device))
    if model.cfg.preset == "tiny":
        log.warning("tiny model: random-weight plumbing model, its output is noise")
    frames, job = animate(cfg, model)
    write_video(cfg.out, frames, job.fps)
    height, width = frames.shape[1:3]
    print(f"wrote {cfg.out}: {len(frames)} frames {width}x{height} at {job.fps:g} fps")
    if cfg.side_by_side:
        threshold = model.cfg.geometry.keypoint_threshold
        write_video(cfg.side_by_side, side_by_side(frames, job, threshold), job.fps)
        print(f"wrote {cfg.side_by_side}")


def main(argv: list[str] | None = None) -> int:
    setup_logging("INFO")
    try:
        run(parse_args(argv))
    except (FileNotFoundError, ValueError) as exc:  # missing files, bad inputs or config
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
