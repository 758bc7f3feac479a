"""pose.backend=precomputed: the sidecar format, frame selection, scaling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preprocess.clip import Clip, VideoInfo
from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose import (
    PoseBackend,
    create_pose_backend,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)

SRC_W, SRC_H = 768, 576  # displayed source size
STORED_W, STORED_H = 384, 288  # stored: half


def source_keypoints(n_frames: int = 30, people: int = 3, k: int = 17) -> np.ndarray:
    """[N, P, K, 3]: person p's point j at (100p + 10j + f, 50 + 20j + 2f) in source px."""
    f, p, j = np.meshgrid(np.arange(n_frames), np.arange(people), np.arange(k), indexing="ij")
    kps = np.stack([100.0 * p + 10 * j + f, 50.0 + 20 * j + 2 * f, np.full(f.shape, 0.8)], -1)
    return kps.astype(np.float32)


def make_clip(video: Path, source_frames: list[int]) -> Clip:
    info = VideoInfo(
        str(video), "vid", SRC_W, SRC_H, 25.0, 100, 0, STORED_W, STORED_H, 25.0, "h264"
    )
    t = len(source_frames)
    frames = np.zeros((t, STORED_H, STORED_W, 3), np.uint8)
    return Clip(info, 0, frames, np.array(source_frames, np.int64))


def backend(sidecar_suffix: str = ".pose.npz") -> PoseBackend:
    return create_pose_backend(PoseConfig(backend="precomputed", sidecar_suffix=sidecar_suffix))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/data/a/clip01.mp4", "/data/a/clip01.pose.npz"),
        ("/data/a.b/clip.v2.mkv", "/data/a.b/clip.v2.pose.npz"),
        ("/data/noext", "/data/noext.pose.npz"),
        ("s3://bucket/x/y.mp4", "s3://bucket/x/y.pose.npz"),
        ("rel.avi", "rel.pose.npz"),
    ],
)
def test_sidecar_path(source: str, expected: str) -> None:
    assert sidecar_path(source) == expected


def test_sidecar_round_trip(tmp_path: Path) -> None:
    kps = source_keypoints(k=133)
    path = write_sidecar(tmp_path / "v.pose.npz", kps, tracked=False)
    assert not list(tmp_path.glob("*.tmp"))
    loaded, tracked = read_sidecar(str(path))
    np.testing.assert_array_equal(loaded, kps)
    assert loaded.dtype == np.float32 and tracked is False
    np.savez(tmp_path / "bare.npz", keypoints=kps)  # without `tracked`: defaults to true
    assert read_sidecar(str(tmp_path / "bare.npz"))[1] is True


def test_clip_selects_scales_and_pads(tmp_path: Path) -> None:
    kps = source_keypoints()
    write_sidecar(tmp_path / "v.pose.npz", kps)
    out = backend().clip_keypoints(make_clip(tmp_path / "v.mp4", [4, 6, 8, 10]))
    assert out.shape == (4, 3, NUM_KEYPOINTS, 3) and out.dtype == np.float32
    expected = kps[[4, 6, 8, 10]] * np.array([0.5, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(out[:, :, :17], expected, rtol=1e-6)
    assert np.all(out[:, :, 17:] == 0)


def test_tracked_sidecar_drops_people_absent_from_the_clip(tmp_path: Path) -> None:
    kps = source_keypoints(people=3)
    kps[:15, 1] = 0.0  # person 1 only appears from frame 15
    kps[3:5, 2, :, 2] = 0.0  # person 2 absent in frames 3-4: absent points are zeroed
    kps[3:5, 2, :, :2] = 123.0
    write_sidecar(tmp_path / "v.pose.npz", kps)
    out = backend().clip_keypoints(make_clip(tmp_path / "v.mp4", list(range(10))))
    assert out.shape == (10, 2, NUM_KEYPOINTS, 3)  # person 1 dropped, order kept
    np.testing.assert_allclose(out[:, 0, 0, 0], kps[:10, 0, 0, 0] / 2)
    absent = np.isin(np.arange(10), [3, 4])
    np.testing.assert_allclose(out[:, 1, 0, 0], np.where(absent, 0, kps[:10, 2, 0, 0] / 2))
    assert np.all(out[3:5, 1] == 0)


def test_untracked_sidecar_is_tracked(tmp_path: Path) -> None:
    kps = source_keypoints(people=2)
    rng = np.random.default_rng(0)
    shuffled = np.stack([frame[rng.permutation(2)] for frame in kps])  # identity lost per frame
    write_sidecar(tmp_path / "v.pose.npz", shuffled, tracked=False)
    out = backend().clip_keypoints(make_clip(tmp_path / "v.mp4", list(range(0, 20, 2))))
    assert out.shape == (10, 2, NUM_KEYPOINTS, 3)
    np.testing.assert_allclose(out[:, 0, :17], kps[0:20:2, 0] * np.array([0.5, 0.5, 1], np.float32))
    np.testing.assert_allclose(out[:, 1, :17], kps[0:20:2, 1] * np.array([0.5, 0.5, 1], np.float32))


def test_custom_suffix(tmp_path: Path) -> None:
    write_sidecar(tmp_path / "v.kp.npz", source_keypoints())
    out = backend(sidecar_suffix=".kp.npz").clip_keypoints(make_clip(tmp_path / "v.mp4", [0]))
    assert out.shape == (1, 3, NUM_KEYPOINTS, 3)


def test_missing_sidecar(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"v\.pose\.npz not found.*sidecar_suffix"):
        backend().clip_keypoints(make_clip(tmp_path / "v.mp4", [0]))


def test_too_few_frames(tmp_path: Path) -> None:
    write_sidecar(tmp_path / "v.pose.npz", source_keypoints(n_frames=30))
    with pytest.raises(ValueError, match=r"has 30 frames; the clip needs source frames 25\.\.30"):
        backend().clip_keypoints(make_clip(tmp_path / "v.mp4", list(range(25, 31))))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((5, 2, 18, 3)), np.zeros((5, 17, 3)), np.zeros((5, 2, 17, 2))],
    ids=["K=18", "no person axis", "no score"],
)
def test_wrong_shapes(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\[N_frames, P, K, 3\]"):
        write_sidecar(tmp_path / "w.pose.npz", bad)
    np.savez(tmp_path / "v.pose.npz", keypoints=bad)
    with pytest.raises(ValueError, match=r"\[N_frames, P, K, 3\]"):
        backend().clip_keypoints(make_clip(tmp_path / "v.mp4", [0]))


def test_no_keypoints_array_and_no_pickles(tmp_path: Path) -> None:
    np.savez(tmp_path / "v.pose.npz", poses=source_keypoints())
    with pytest.raises(ValueError, match="no 'keypoints' array"):
        backend().clip_keypoints(make_clip(tmp_path / "v.mp4", [0]))
    np.savez(tmp_path / "p.pose.npz", keypoints=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        backend().clip_keypoints(make_clip(tmp_path / "p.mp4", [0]))


def test_detect_frames_needs_a_video() -> None:
    with pytest.raises(NotImplementedError, match="sidecar"):
        backend().detect_frames(np.zeros((1, 8, 8, 3), np.uint8))


def test_identity() -> None:
    ident = backend().identity()
    assert ident["name"] == "precomputed" and ident["sha256"] is None
    assert ident["sidecar_suffix"] == ".pose.npz"
