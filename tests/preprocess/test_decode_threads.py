"""Decode threads and the one resize: decord decodes on ``cpu_threads()`` threads (Ray's
``OMP_NUM_THREADS`` of the task, else ffmpeg's choice) and scales to the stored size inside
the decoder, with no second resize; the frames are those ffmpeg shows, whatever the threads.
Next to it: tests/preprocess/test_decode.py (the decode stage itself), docs/cluster.md.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import decord
import numpy as np
import pytest

import preprocess.decode as decode
from preprocess.config import DecodeConfig, PreprocessConfig
from preprocess.decode import iter_clips, probe_video
from preprocess.devices import cpu_threads
from preprocess.fused import frames_clip
from preprocess.stages import EncodeStage

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def ffmpeg_frames(path: Path, size: tuple[int, int], n: int) -> np.ndarray:
    """The first ``n`` frames as the ffmpeg CLI decodes and scales them, (n, h, w, 3) RGB."""
    h, w = size
    cmd = [FFMPEG, "-v", "error", "-i", str(path), "-frames:v", str(n)]
    cmd += ["-vf", f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(n, h, w, 3)


@pytest.mark.parametrize(
    ("value", "threads"), [("1", 1), ("3", 3), (" 2 ", 2), ("", 0), ("auto", 0), (None, 0)]
)
def test_decoder_threads_follow_omp_num_threads(
    monkeypatch: pytest.MonkeyPatch, value: str | None, threads: int
) -> None:
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert cpu_threads() == threads


@pytest.mark.parametrize("omp", ["1", "2"])
def test_frames_are_decoded_threaded_and_resized_once(
    monkeypatch: pytest.MonkeyPatch, dance: Path, omp: str
) -> None:
    """decord is opened once, by the probe, at the stored 640x1138 size and the task's
    threads; OpenCV never resizes a frame again; the frames match ffmpeg's own decode of the 1080x1920 source."""
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    opened: list[dict[str, Any]] = []
    real_reader = decord.VideoReader

    def recording_reader(*args: Any, **kwargs: Any) -> decord.VideoReader:
        opened.append(kwargs)
        return real_reader(*args, **kwargs)

    real_resize = decode.cv2.resize
    resized: list[tuple[int, ...]] = []

    def recording_resize(frame: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        resized.append(frame.shape)  # cut signatures and thumbnails shrink frames too
        return real_resize(frame, *args, **kwargs)

    monkeypatch.setattr(decode.decord, "VideoReader", recording_reader)
    cfg = DecodeConfig(max_frames=16, clip_frames=16)
    info = probe_video(str(dance), cfg)  # (its first-frame check shrinks a source frame)
    monkeypatch.setattr(decode.cv2, "resize", recording_resize)
    (clip,) = list(iter_clips(info, cfg))
    assert clip.frames.shape == (16, 1138, 640, 3)
    assert resized and (1920, 1080, 3) not in resized  # no source-size frame reached OpenCV
    assert len(opened) == 1  # the probe's reader, at the stored size, read again by iter_clips
    assert all(k["num_threads"] == int(omp) for k in opened)
    assert opened[-1]["width"] == 640 and opened[-1]["height"] == 1138  # scaled by decord
    reference = ffmpeg_frames(dance, (1138, 640), 16)  # (16, 1138, 640, 3)
    mad = np.abs(clip.frames.astype(np.int16) - reference.astype(np.int16)).mean()
    assert mad < 3.0, mad  # the same frames, same size; only the scaler's filter differs


@pytest.mark.parametrize("omp", ["1", "2"])
def test_the_encode_stage_runs_x264_on_the_tasks_threads(
    monkeypatch: pytest.MonkeyPatch, omp: str
) -> None:
    """The encode stage hands ``cpu_threads()`` to x264 (one thread in a one-CPU Ray task,
    the cheapest per frame) and keeps the mp4 on the clip for the pack stage."""
    from shards import codec

    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    calls: list[tuple[Any, ...]] = []
    real = codec.encode_frames
    monkeypatch.setattr(codec, "encode_frames", lambda *a: calls.append(a) or real(*a))
    clip = frames_clip(np.full((3, 32, 48, 3), 120, np.uint8))
    clip = EncodeStage(PreprocessConfig(), {})(clip)
    ((frames, _fps, crf, preset, threads),) = calls
    assert (crf, preset, threads) == (23, "ultrafast", int(omp)) and frames.shape[0] == 3
    assert clip.mp4 is not None and codec.decode_frames(clip.mp4)[0].shape == (3, 32, 48, 3)
