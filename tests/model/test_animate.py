"""``python -m model.animate`` end to end with a tiny random-weight model (output is noise):
real video + real MoveNet, and the pose-file path."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from model import animate, init
from model.folder import load_model_folder
from model.inputs import match_characters
from preprocess.pose import write_sidecar
from shards.video import write_video
from tests.model.test_inputs import person


def read_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def tiny_stage2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny2"
    assert init.main(["--preset", "tiny", "--out", str(out), "--stage", "2"]) == 0
    return out


def test_animate_a_real_video_with_movenet(
    tiny_stage2: Path, dance: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    with av.open(str(dance)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="bgr24")
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), first)
    out, sbs = tmp_path / "out.mp4", tmp_path / "sbs.mp4"
    argv = [
        "--checkpoint",
        str(tiny_stage2),
        "--reference",
        str(reference),
        "--driving",
        str(dance),
    ]
    argv += ["--out", str(out), "--side-by-side", str(sbs), "--max-frames", "20", "--steps", "2"]
    argv += ["--height", "128", "--width", "96", "--pose-model", str(movenet_onnx)]
    argv += [
        "pose.input_size=256"
    ]  # MoveNet MultiPose finds this large dancer at 256 (docs/pose.md)
    assert animate.main(argv) == 0
    frames = read_frames(out)
    assert frames.shape == (20, 128, 96, 3)  # 20 frames: two 16-frame windows
    side = read_frames(sbs)
    assert side.shape == (20, 128, 3 * 96, 3)
    poses = side[:, :, 96:192]
    assert (poses.reshape(20, -1).max(1) > 100).all(), "a pose was drawn in every frame"
    with av.open(str(out)) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(24.0)


def _pose_file_argv(tmp_path: Path, checkpoint: Path) -> list[str]:
    """Two dancers crossing over 6 frames, written as a precomputed sidecar (1080x1920)."""
    frames = 6
    kps = np.zeros((frames, 2, 133, 3), np.float32)
    for t in range(frames):
        kps[t, 0] = person(300 + 60 * t, 1700, 1100)
        kps[t, 1] = person(800 - 60 * t, 1600, 1000)
    sidecar = write_sidecar(tmp_path / "clip.pose.npz", kps)
    reference = np.full((1920, 1080, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "ref.png"), reference)
    np.save(tmp_path / "ref_pose.npy", np.stack([kps[0, 1], kps[0, 0]]))  # other order
    argv = ["--checkpoint", str(checkpoint), "--reference", str(tmp_path / "ref.png")]
    argv += [
        "--driving",
        str(sidecar),
        "--pose-size",
        "1920x1080",
        "--out",
        str(tmp_path / "o.mp4"),
    ]
    argv += ["--reference-pose", str(tmp_path / "ref_pose.npy"), "--steps", "2"]
    argv += ["--height", "64", "--width", "48", "--fps", "12", "sampling.seed=3"]
    return argv


def test_pose_file_driving_is_deterministic_and_matches_characters(
    tiny_stage2: Path, tmp_path: Path
) -> None:
    argv = _pose_file_argv(tmp_path, tiny_stage2)
    cfg = animate.parse_args(argv)
    assert cfg.sampling.steps == 2 and cfg.sampling.seed == 3 and cfg.fps == 12
    model = load_model_folder(cfg.checkpoint)
    frames_a, job = animate.animate(cfg, model, progress=False)
    frames_b, _ = animate.animate(cfg, model, progress=False)
    assert frames_a.shape == (6, 64, 48, 3) and frames_a.dtype == np.uint8
    assert np.array_equal(frames_a, frames_b)
    assert job.driving_kps.shape == (6, 2, 133, 3) and job.fps == 12
    # The reference lists the dancers in the other order; matching follows the poses.
    match = match_characters(job.reference_kps, job.driving_kps, (64, 48), model.cfg.geometry)
    assert match.tolist() == [1, 0]
    assert animate.main(argv) == 0
    assert read_frames(Path(cfg.out)).shape == frames_a.shape


def test_pose_files_need_their_pixel_size(tiny_stage2: Path, tmp_path: Path) -> None:
    cfg = animate.parse_args(_pose_file_argv(tmp_path, tiny_stage2))
    cfg.pose_size = ""
    with pytest.raises(ValueError, match="--pose-size"):
        animate.driving_keypoints(cfg)


def test_sidecars_next_to_videos_give_poses_size_and_rate(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, np.zeros((6, 192, 108, 3), np.uint8), fps=12.5)
    kps = np.zeros((6, 1, 17, 3), np.float32)  # a 17-point (MoveNet-like) sidecar
    kps[:, 0, :, :2], kps[:, 0, :, 2] = 50.0, 0.9
    write_sidecar(tmp_path / "clip.pose.npz", kps)
    base = ["--checkpoint", "x", "--reference", "r.png", "--out", "o.mp4"]
    # The video, with pose.backend=precomputed: poses from its sidecar, size and rate from it.
    cfg = animate.parse_args([*base, "--driving", str(video), "--pose-backend", "precomputed"])
    got, size, fps = animate.driving_keypoints(cfg)
    assert got.shape == (6, 1, 133, 3) and size == (192, 108) and fps == pytest.approx(12.5)
    # The sidecar itself: pixel size and rate come from the video of the same stem.
    cfg = animate.parse_args([*base, "--driving", str(tmp_path / "clip.pose.npz")])
    got, size, fps = animate.driving_keypoints(cfg)
    assert got.shape == (6, 1, 133, 3) and size == (192, 108) and fps == pytest.approx(12.5)


def test_pose_file_rate_is_fps_else_the_same_stem_video_else_30(tmp_path: Path) -> None:
    kps = np.zeros((4, 1, 17, 3), np.float32)
    kps[:, 0, :, :2], kps[:, 0, :, 2] = 40.0, 0.9
    write_sidecar(tmp_path / "a.pose.npz", kps)
    np.save(tmp_path / "a.npy", kps)
    write_video(tmp_path / "a.avi", np.zeros((4, 96, 64, 3), np.uint8), fps=15)
    write_sidecar(tmp_path / "lone.pose.npz", kps)  # no video of that stem
    base = ["--checkpoint", "x", "--reference", "r.png", "--out", "o.mp4"]

    def rate(*argv: str) -> tuple[tuple[int, int], float]:
        _, size, fps = animate.driving_keypoints(animate.parse_args([*base, *argv]))
        return size, fps

    sidecar, npy, lone = (str(tmp_path / n) for n in ("a.pose.npz", "a.npy", "lone.pose.npz"))
    assert rate("--driving", sidecar) == ((96, 64), pytest.approx(15.0))  # from a.avi
    assert rate("--driving", npy) == ((96, 64), pytest.approx(15.0))
    # --fps wins over the video; --pose-size over its size (the rate still from the video).
    assert rate("--driving", sidecar, "--fps", "8") == ((96, 64), 8.0)
    assert rate("--driving", sidecar, "--pose-size", "50x40") == ((50, 40), pytest.approx(15.0))
    # No video of the same stem: the size must be given, the rate is 30 unless --fps.
    assert rate("--driving", lone, "--pose-size", "50x40") == ((50, 40), 30.0)
    assert rate("--driving", lone, "--pose-size", "50x40", "--fps", "24") == ((50, 40), 24.0)
    with pytest.raises(ValueError, match="--pose-size"):
        rate("--driving", lone)
    assert "same stem" in animate.build_cli()[1].format_help()
