"""Video I/O (video.py): H.264 files written atomically, real videos read and probed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shards import codec, video
from tests.shards.synthetic import natural_frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_the_shard_field_is_this_encoding() -> None:
    assert codec.encode_frames is video.encode_h264 and codec.decode_frames is video.decode_h264


def test_written_video_reads_back(tmp_path: Path) -> None:
    frames = natural_frames(6, 48, 64)
    path = tmp_path / "out" / "clip.mp4"  # the folder is created
    video.write_video(path, frames, fps=12.5, preset="ultrafast")
    back, fps = video.read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8 and fps == 12.5
    assert psnr(back, frames) > 35
    assert video.read_video(str(path), max_frames=2)[0].shape == (2, 48, 64, 3)
    assert video.probe_video(path) == ((48, 64), 12.5)
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no tmp file left


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="even frame sizes"):
        video.write_video(path, np.zeros((3, 47, 64, 3), np.uint8), fps=10)
    assert list(tmp_path.iterdir()) == []
    video.write_video(path, natural_frames(2, 48, 64), fps=10, preset="ultrafast")
    before = path.read_bytes()

    def broken(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[:100])  # a partial file, then the disk fills up
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("pathlib.Path.write_bytes", broken)
        with pytest.raises(OSError, match="disk full"):
            video.write_video(path, natural_frames(4, 48, 64), fps=10, preset="ultrafast")
    assert path.read_bytes() == before  # the old file is whole, no tmp file beside it
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_real_videos_are_read_and_probed(dance: Path, vtest: Path) -> None:
    assert video.probe_video(dance) == ((1920, 1080), 24.0)  # portrait
    frames, fps = video.read_video(dance, max_frames=3)
    assert frames.shape == (3, 1920, 1080, 3) and frames.dtype == np.uint8 and fps == 24.0
    assert video.probe_video(str(vtest)) == ((576, 768), 10.0)
    frames, fps = video.read_video(vtest, max_frames=4)
    assert frames.shape == (4, 576, 768, 3) and fps == 10.0
    assert 40 < frames.mean() < 220 and frames.std() > 10  # a real picture, not blank
    with pytest.raises(FileNotFoundError):
        video.probe_video(vtest.with_name("missing.avi"))


def test_videos_on_s3(s3_server: str) -> None:
    uri = f"{s3_server}/video-io/clip.mp4"
    frames = natural_frames(4, 48, 64)
    video.write_video(uri, frames, fps=25, preset="ultrafast")
    assert video.probe_video(uri) == ((48, 64), 25.0)
    back, fps = video.read_video(uri)
    assert back.shape == frames.shape and fps == 25.0
