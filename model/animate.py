"""``python -m model.animate``: animate a reference image with a driving video or pose file.

    python -m model.animate --checkpoint out/model --reference ref.png \\
        --driving dance.mp4 --out out/result.mp4 [--side-by-side out/sbs.mp4] \\
        [--pose-model models/movenet_multipose.onnx] [--steps 50] [--guidance 1.5] \\
        [--height 896 --width 640] [--max-frames 64] [key.sub=value ...]

``--driving`` is a video (poses from the pose backend, ``pose.backend``; with
``pose.backend=precomputed`` from its ``.pose.npz`` sidecar) or a pose file: a sidecar
``.pose.npz`` (``keypoints`` [T, P, K, 3]) or an ``.npy`` of [T, P, 133, 3] such as a shard
sample's ``pose.npy``; pose files need the pixel size their coordinates refer to
(``--pose-size HxW``, or a video of the same stem next to them). The reference image's pose
comes from the same backend, or from ``--reference-pose`` (an ``.npy`` of [P, 133, 3] in the
image's pixels). Dotted overrides reach every field of :class:`AnimateConfig`
(``sampling.eta=0.5``, ``pose.input_size=384``, ...). See docs/model.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from model.composed import AnimationModel
from model.config import SamplingConfig, apply_overrides
from model.folder import load_model_folder
from model.guiders import Conditions
from model.inputs import guider_arrays, match_characters, track_priority
from model.pipeline import (
    decode_frames,
    encode_reference,
    guide_frames,
    reference_inputs,
    sample_latents,
)
from preprocess.config import DepthConfig, PoseConfig
from preprocess.depth import create_depth_backend
from preprocess.geometry.canvas import Crop, reference_nearness
from preprocess.geometry.layout import pad_to_wholebody
from preprocess.pose import create_pose_backend, read_sidecar, render_pose, sidecar_path, track

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    pose: PoseConfig = field(default_factory=PoseConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)


def parse_args(argv: Sequence[str] | None) -> AnimateConfig:
    p = argparse.ArgumentParser(prog="python -m model.animate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--driving", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--side-by-side", default="")
    p.add_argument("--reference-pose", default="")
    p.add_argument("--pose-size", default="")
    p.add_argument("--pose-backend", default=None, help="pose.backend (default movenet)")
    p.add_argument("--pose-model", default=None, help="pose.model (ONNX path)")
    p.add_argument("--max-frames", type=int, default=0)
    p.add_argument("--fps", type=float, default=0.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    for name in ("steps", "guidance_scale", "height", "width", "seed", "window", "stride"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"sampling.{name}", default=None)
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = p.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k != "overrides"}
    dotted = [f"{k}={v}" for k, v in flags.items() if k.startswith("sampling.") and v is not None]
    dotted += [f"pose.backend={args.pose_backend}"] if args.pose_backend else []
    dotted += [f"pose.model={args.pose_model}"] if args.pose_model else []
    base = AnimateConfig(
        **{
            k: v
            for k, v in flags.items()
            if "." not in k and k not in ("pose_backend", "pose_model")
        }
    )
    return apply_overrides(base, [*dotted, *args.overrides])


# ---- inputs ------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read reference image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_video(path: str, max_frames: int) -> tuple[np.ndarray, float]:
    """(T, H, W, 3) uint8 RGB frames (at most ``max_frames``, 0 = all) and the frame rate."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or 30)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames), fps


def probe_video(path: str) -> tuple[tuple[int, int], float]:
    """((height, width), frame rate) of a video file."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return (stream.height, stream.width), float(stream.average_rate or 30)


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
        frames, fps = read_video(path, cfg.max_frames)
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
    """MoveNet from the shared assets (MCANIM_ASSETS) when no pose.model is configured."""
    if cfg.pose.backend != "movenet" or cfg.pose.model:
        return
    assets = Path(
        os.environ.get("MCANIM_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets")
    )
    candidate = assets / "models" / "movenet_multipose.onnx"
    if candidate.is_file():
        cfg.pose.model = str(candidate)
        log.info("pose.model not set: using %s", candidate)


# ---- output ------------------------------------------------------------------------------
def write_video(path: str, frames: np.ndarray, fps: float) -> None:
    """(T, H, W, 3) uint8 RGB -> H.264 mp4 (PyAV), written to a temporary name then renamed."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    tmp.replace(out)


# ---- the job -----------------------------------------------------------------------------
def _device_dtype(cfg: AnimateConfig) -> tuple[torch.device, torch.dtype]:
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if cfg.device == "auto"
        else cfg.device
    )
    if cfg.dtype != "auto":
        return device, DTYPES[cfg.dtype]
    return device, torch.bfloat16 if device.type == "cuda" else torch.float32


@dataclass
class Prepared:
    """The canvas-space inputs of one job."""

    reference: np.ndarray  # (H, W, 3) uint8, cropped
    reference_kps: np.ndarray  # (P_r, 133, 3) canvas pixels
    driving_kps: np.ndarray  # (T, P_d, 133, 3) canvas pixels
    priority: np.ndarray  # (P_d,) front-to-back order of the driving tracks
    fps: float


def prepare(cfg: AnimateConfig, model: AnimationModel) -> Prepared:
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
    """Generated frames (T, H, W, 3) uint8 and the prepared inputs."""
    job = prepare(cfg, model)
    size = (cfg.sampling.height, cfg.sampling.width)
    geo = model.cfg.geometry

    def conditions(start: int, stop: int) -> Conditions:
        arrays = guider_arrays(
            job.driving_kps[start:stop], job.reference_kps, job.priority, size, geo
        )
        return Conditions.from_arrays(arrays)

    c_multi = guide_frames(model, conditions, len(job.driving_kps), cfg.sampling.window)
    latents, embeds = reference_inputs(model, job.reference)
    reference = encode_reference(model, latents, embeds)
    video = sample_latents(model, reference, c_multi, cfg.sampling, progress=progress)
    return decode_frames(model, video), job


def side_by_side(frames: np.ndarray, job: Prepared, threshold: float) -> np.ndarray:
    """(T, H, 3W, 3): reference | pose map | result."""
    size = frames.shape[1:3]
    poses = [render_pose(k, size, size, threshold) for k in job.driving_kps]
    return np.stack(
        [np.concatenate([job.reference, p, f], axis=1) for p, f in zip(poses, frames, strict=True)]
    )


def run(cfg: AnimateConfig) -> None:
    """Load the model, animate, write the video(s)."""
    device, dtype = _device_dtype(cfg)
    model = load_model_folder(cfg.checkpoint, device=device, dtype=dtype)
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
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = parse_args(argv)
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:  # missing files, bad inputs or config
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
