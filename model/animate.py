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
image's pixels).

Extractors: the pose and depth backends default to the ones that made the model's training
data, with their settings, as its folder records them (``preprocessing``, written by the
trainer; :mod:`model.extractors`): precedence defaults < the folder's record < flags <
overrides. A run that changes them gets a warning naming each difference, and recorded weights
that are missing here are an error saying which file the model needs. A folder that records
none (``python -m model.init``: not trained on any data) uses ``pose.*`` / ``depth.*`` as
configured, by default MoveNet body-only maps and the feet heuristic. Dotted overrides reach every field of :class:`AnimateConfig`
(``sampling.eta=0.5``, ``pose.input_size=384``, ...); ``--help`` lists them all. This entry
point is the one module of ``model/`` that may use extractor backends (pose, depth). See
docs/model.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.composed import AnimationModel
from model.config import PreprocessingRecord, SamplingConfig
from model.extractors import describe, identity_differences, recorded_sections, setting_differences
from model.folder import CONFIG_NAME, load_model_folder, read_model_config
from model.guiders import Conditions
from model.inputs import guider_arrays, reference_order
from model.pipeline import generate
from preprocess.config import DepthConfig, PoseConfig
from preprocess.depth import create_depth_backend
from preprocess.devices import DTYPES, torch_device, torch_dtype
from preprocess.geometry.canvas import Crop
from preprocess.geometry.layout import pad_to_wholebody
from preprocess.pose import (
    PoseBackend,
    create_pose_backend,
    read_sidecar,
    render_pose,
    sidecar_path,
    track,
)
from preprocess.weights import assets_dir
from shards.config import ConfigCLI
from shards.logs import setup_logging
from shards.video import probe_video, read_video, write_video

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
POSE_FILE_FPS = 30.0
"""Output rate of a pose file with no ``--fps`` and no video of the same stem next to it."""
PoseSource = Callable[[], PoseBackend]
"""Gives the pose backend when a pose has to be detected (created once, on first use)."""
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
    """Output frame rate (0: the driving video's; for a pose file, the rate of the video of
    the same stem next to it, else 30)."""
    max_frames: int = 0
    """Animate at most this many driving frames (0: all)."""
    device: str = "auto"
    """``auto`` (CUDA when available) | ``cpu`` | ``cuda`` | ``cuda:1`` ..."""
    dtype: str = "auto"
    """``auto`` (bfloat16 on CUDA, float32 on CPU) | ``float32`` | ``float16`` | ``bfloat16``."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """DDIM sampling: steps, guidance, windows, canvas size, seed."""
    accept_unrecorded: bool = False
    """Accept a model folder of format version 1, which does not record the extractors of
    its training data: pose.* and depth.* are then as configured here."""
    pose: PoseConfig = field(default_factory=PoseConfig)
    """Pose backend for the driving video and the reference image (default: the one that
    made the model's training data, as its folder records it; MoveNet when it records none)."""
    depth: DepthConfig = field(default_factory=DepthConfig)
    """Depth backend for the reference image's front-to-back order (default: the training
    data's, as the model folder records it; the feet heuristic when it records none)."""


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
    cli.flag(parser, "--depth-backend", key="depth.backend")
    cli.flag(parser, "--accept-unrecorded")
    for name in ("--max-frames", "--fps", "--device"):
        cli.flag(parser, name)
    cli.flag(parser, "--dtype", choices=["auto", *DTYPES])
    for name in SAMPLING_FLAGS:
        cli.flag(parser, f"--{name.replace('_', '-')}", key=f"sampling.{name}")
    return cli, parser


def parse_args(argv: Sequence[str] | None) -> AnimateConfig:
    """The :class:`AnimateConfig` of a command line: defaults < the checkpoint's recorded
    extractors (when it is a model folder that records them) < flags < overrides."""
    cli, parser = build_cli()
    args = parser.parse_args(argv)
    cfg = cli.config(args)
    if (Path(cfg.checkpoint) / CONFIG_NAME).is_file():
        record = read_model_config(cfg.checkpoint, accept_unrecorded=cfg.accept_unrecorded)
        sections = recorded_sections(record.preprocessing)
        if sections is not None:
            cli.base = replace(AnimateConfig(), pose=sections[0], depth=sections[1])
            cfg = cli.config(args)
    return cfg


# ---- extractors ----------------------------------------------------------------------------
def report_extractors(cfg: AnimateConfig, record: PreprocessingRecord) -> None:
    """Say which extractors make the inputs: a warning per setting that differs from the
    training data's (the record), or, without a record, that the configured ones are used."""
    if not record.recorded:
        log.info(
            "%s records no extractors of training data (python -m model.init: not trained on "
            "data): pose.backend=%s and depth.backend=%s as configured",
            cfg.checkpoint,
            cfg.pose.backend,
            cfg.depth.backend,
        )
        return
    assert record.pose is not None and record.depth is not None
    diffs = setting_differences(record.pose, cfg.pose, "pose")
    diffs += setting_differences(record.depth, cfg.depth, "depth")
    for diff in diffs:
        log.warning("extractor setting differs from the model's training data: %s", diff)


def checked_backend(
    create: Callable[[Any], Any], section: Any, kind: str, cfg: AnimateConfig, record: Any
) -> Any:
    """``create(section)``; with a record, missing weights name the extractor the model was
    trained with, and another identity (name, weights sha256, preset) is a warning."""
    try:
        backend = create(section)
    except FileNotFoundError as exc:
        if not record.recorded:
            raise
        raise FileNotFoundError(
            f"{exc}\nmodel folder {cfg.checkpoint} was trained on data whose {kind} came from "
            f"{describe(record, kind)}, and inference uses the same by default: put its "
            "weights on this machine and point the config key named above at them, or choose "
            f"another {kind} extractor explicitly ({kind}.backend=...; its inputs then differ "
            "from the training data's, and a warning says so)"
        ) from None
    if record.recorded:
        used, recorded = backend.identity(), record.backends.get(kind)
        for diff in identity_differences(recorded, used, kind) if recorded else []:
            log.warning("extractor differs from the model's training data: %s", diff)
    return backend


# ---- inputs ------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read reference image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pose_file_size_fps(cfg: AnimateConfig) -> tuple[tuple[int, int], float]:
    """(source pixel size, fps) of a pose file: ``--pose-size`` / ``--fps`` when given, else
    probed from the video of the same stem next to it; with no such video the size must be
    given and the rate is 30."""
    stem = (
        cfg.driving.removesuffix(cfg.pose.sidecar_suffix).removesuffix(".npy").removesuffix(".pose")
    )
    video = next((stem + s for s in VIDEO_SUFFIXES if os.path.isfile(stem + s)), None)
    probed = probe_video(video) if video is not None and not (cfg.pose_size and cfg.fps) else None
    if cfg.pose_size:
        h, w = (int(v) for v in cfg.pose_size.lower().split("x"))
        size = (h, w)
    elif probed is not None:
        size = probed[0]
    else:
        raise ValueError(
            f"{cfg.driving}: give --pose-size HxW (no video of the same stem next to it)"
        )
    return size, cfg.fps or (probed[1] if probed is not None else POSE_FILE_FPS)


def _tracked(keypoints: np.ndarray, tracked: bool, pose: PoseConfig) -> np.ndarray:
    kps = pad_to_wholebody(keypoints)  # (T, P, 133, 3)
    if tracked:
        return kps
    return track([people[people[..., 2].max(-1) > 0] for people in kps], pose)


def driving_keypoints(
    cfg: AnimateConfig, backend: PoseSource | None = None
) -> tuple[np.ndarray, tuple[int, int], float]:
    """Tracked driving keypoints (T, P, 133, 3) in source pixels, the source size, the fps
    (poses of a video detected by ``backend()``, default ``pose.backend``)."""
    path, limit = cfg.driving, cfg.max_frames or None
    if path.lower().endswith(VIDEO_SUFFIXES):
        if cfg.pose.backend == "precomputed":
            kps, tracked = read_sidecar(sidecar_path(path, cfg.pose.sidecar_suffix))
            size, video_fps = probe_video(path)
            return _tracked(kps[:limit], tracked, cfg.pose), size, cfg.fps or video_fps
        frames, fps = read_video(path, cfg.max_frames)  # (T, H, W, 3)
        log.info("detecting poses in %d driving frames (%s)", len(frames), cfg.pose.backend)
        keypoints = (backend or (lambda: create_pose_backend(cfg.pose)))().track_frames(frames)
        return keypoints, frames.shape[1:3], cfg.fps or fps
    if path.endswith(".npz"):
        kps, tracked = read_sidecar(path)
    elif path.endswith(".npy"):
        kps, tracked = np.load(path, allow_pickle=False).astype(np.float32), True
    else:
        raise ValueError(f"--driving {path}: expected a video ({VIDEO_SUFFIXES}), .npz or .npy")
    size, fps = _pose_file_size_fps(cfg)
    return _tracked(kps[:limit], tracked, cfg.pose), size, fps


def reference_keypoints(
    cfg: AnimateConfig, image: np.ndarray, backend: PoseSource | None = None
) -> np.ndarray:
    """(P, 133, 3) keypoints of the reference image, in its own pixels (detected at full
    resolution by ``backend()``, default ``pose.backend``, or read from ``--reference-pose``)."""
    if cfg.reference_pose:
        return pad_to_wholebody(np.load(cfg.reference_pose, allow_pickle=False)[None])[0]
    if cfg.pose.backend == "precomputed":
        raise ValueError(
            "pose.backend=precomputed cannot detect the reference's pose: "
            "pass --reference-pose or use a detecting backend (movenet)"
        )
    return (backend or (lambda: create_pose_backend(cfg.pose)))().people(image[None])[0]


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
    geo, record = model.cfg.geometry, model.cfg.preprocessing
    default_pose_model(cfg)
    report_extractors(cfg, record)
    pose = cache(lambda: checked_backend(create_pose_backend, cfg.pose, "pose", cfg, record))
    image = read_image(cfg.reference)
    crop = Crop(image.shape[:2], size)
    reference = crop.image(image)
    ref_kps = crop.keypoints(reference_keypoints(cfg, image, pose))
    kps, source_size, fps = driving_keypoints(cfg, pose)
    driving = Crop(source_size, size).keypoints(kps)
    depth_backend = checked_backend(create_depth_backend, cfg.depth, "depth", cfg, record)
    depth = depth_backend.clip_depth(reference[None], size)  # (1, H, W) or None
    match, priority = reference_order(
        ref_kps, driving, size, geo, None if depth is None else depth[0]
    )
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
    geo, inputs = model.cfg.geometry, model.cfg.guiders.names

    def conditions(start: int, stop: int) -> Conditions:
        arrays = guider_arrays(
            job.driving_kps[start:stop], job.reference_kps, job.priority, size, geo, inputs
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
    model = load_model_folder(
        cfg.checkpoint,
        device=device,
        dtype=torch_dtype(cfg.dtype, device),
        accept_unrecorded=cfg.accept_unrecorded,
    )
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
