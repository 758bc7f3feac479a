"""Helpers of the runner tests: tiny real videos, a short Ray temp dir, the output's keys, and
a stage to add to the stage table."""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np

from preprocess.clip import Clip
from preprocess.config import PreprocessConfig, RunConfig
from preprocess.stages import STAGES, Resources, Stage
from shards.__main__ import main as shards_main
from shards.reader import read_clips
from tests.media import read_frames

REPO = Path(__file__).resolve().parents[2]
CPU_PRESET = REPO / "jobs" / "preprocess" / "cpu.yaml"
PYTHON = sys.executable


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """An H.264 file of ``frames`` (N, H, W, 3) RGB."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


def vtest_videos(vtest: Path, folder: Path, n_videos: int, frames: int) -> list[Path]:
    """``n_videos`` consecutive pieces of the real vtest.avi, ``frames`` frames each, at half
    size (small, quick to process, still real people in a real street)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = read_frames(vtest, n_videos * frames)[:, ::2, ::2].copy()
    return [
        write_mp4(folder / f"v{i}.mp4", source[i * frames : (i + 1) * frames])
        for i in range(n_videos)
    ]


def job_overrides(movenet_onnx: Path) -> list[str]:
    """Small, fast settings shared by the Ray tests (the same for every run compared)."""
    return [
        f"pose.model={movenet_onnx}",
        "pose.input_size=256",
        "decode.clip_frames=16",
        "decode.min_clip_frames=8",
        "flow.preset=ultrafast",
        "shards.x264_preset=ultrafast",
        "shards.max_clips=1",
    ]


def clip_keys(out: str | Path) -> list[str]:
    """Every clip key of an output, sorted, duplicates kept."""
    return sorted(read_clips(out, columns=["key"]).column("key").to_pylist())


def validates(out: Path) -> bool:
    return shards_main(["validate", str(out)]) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def short_tmp() -> Iterator[Path]:
    """A short temp dir for Ray (its unix socket paths must stay under ~107 characters)."""
    with tempfile.TemporaryDirectory(prefix="mcr", dir="/tmp") as tmp:
        yield Path(tmp)


# -- a stage added to the table by the tests (importable by Ray workers) ---------------------


class AuditStage:
    """A model stage the tests add to ``preprocess.stages.STAGES``: it fails on the clips of
    ``bad*`` videos and passes the others on, a little later."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg

    def backends(self) -> dict[str, Any]:
        return {}

    def __call__(self, clip: Clip) -> Clip:
        if Path(clip.video.source).name.startswith("bad"):
            raise ValueError("planted failure")
        time.sleep(0.02)
        return clip


def audit_resources(r: RunConfig) -> Resources:
    return Resources(cpus=0.25, actors=1)


def with_audit_stage(before: str = "geometry") -> tuple[Stage, ...]:
    """The stage table with an ``audit`` model stage inserted before stage ``before``."""
    audit = Stage("audit", audit_resources, model=AuditStage)
    names = [s.name for s in STAGES]
    at = names.index(before)
    return (*STAGES[:at], audit, *STAGES[at:])
