"""Helpers of the runner tests: tiny real videos, a short Ray temp dir, the output's keys, a
stage to add to the stage table, and marks on a stage that show the tests which clip ran
where (and can hold one clip in flight until a worker is killed)."""

from __future__ import annotations

import functools
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np

from preprocess.clip import Clip
from preprocess.config import PreprocessConfig, RunConfig
from preprocess.stages import STAGES, ModelStage, Resources, RunMeta, Stage, StageFn
from shards.__main__ import main as shards_main
from shards.reader import read_clips
from tests.media import read_frames

REPO = Path(__file__).resolve().parents[2]
CPU_PRESET = REPO / "jobs" / "preprocess" / "cpu_fast.yaml"  # MoveNet MultiPose: fast
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
    """Small, fast settings shared by the Ray tests (the same for every run compared): MoveNet
    MultiPose whatever pose backend the CPU preset chooses."""
    return [
        "pose.backend=movenet",
        f"pose.model={movenet_onnx}",
        "pose.input_size=256",
        "decode.clip_frames=16",
        "decode.min_clip_frames=8",
        "flow.preset=ultrafast",
        "shards.x264_preset=ultrafast",
        "shards.max_clips=1",
        "run.inline_actors=2",  # the inline layout (the default here): two actors, not one per CPU
    ]


# Clip columns that two runs of the same inputs and config must agree on (the tests compare
# bg_flow_mean to rtol 1e-5 and leave pose_score_mean out of the exact comparison).
COMPARED = [
    "key",
    "video_id",
    "clip_index",
    "start_frame",
    "end_frame",
    "n_frames",
    "width",
    "height",
    "n_tracks",
    "bg_flow_mean",
    "characters_max",
    "pose_score_mean",
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


# -- marks: which clip a stage started and finished, in which process -----------------------

HOLD_LIMIT_S = 300.0
"""Longest a held clip waits for its worker to be killed (only bounds a hang of a failing
test: the tests kill the worker as soon as the ``held`` file appears)."""


def wait_for(condition: Callable[[], bool], limit_s: float, poll_s: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``limit_s`` passes (False): the limit only
    bounds a hang, no result depends on how long anything took."""
    end = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(poll_s)
    return True


def ray_node_id() -> str:
    """The Ray node this process runs on, ``-`` outside a Ray worker (Ray is not imported)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "-"
    return str(ray.get_runtime_context().get_node_id())


class Marked:
    """A stage function that leaves files in ``folder`` for the tests: ``KEY.PID.start`` when
    it starts a clip and ``KEY.PID.done`` when the wrapped stage returned it. The clip
    ``hold`` (``VIDEO_FILE_NAME:CLIP_INDEX``) waits on its first attempt, after writing
    ``held`` (``KEY PID NODE``: the Ray node id, ``-`` outside Ray), until the file ``release`` exists: a clip provably in flight,
    for a test to kill its worker. A retried attempt of the held clip does not wait."""

    def __init__(self, inner: StageFn, folder: str, hold: str = "") -> None:
        self.inner, self.folder, self.hold = inner, Path(folder), hold

    def __call__(self, clip: Clip) -> Clip:
        key, pid = clip.key, os.getpid()
        first = not any(self.folder.glob(f"{key}.*.start"))
        (self.folder / f"{key}.{pid}.start").touch()
        if first and self.hold == f"{Path(clip.video.source).name}:{clip.index}":
            tmp = self.folder / f".held.{pid}"
            tmp.write_text(f"{key} {pid} {ray_node_id()}")
            tmp.replace(self.folder / "held")  # whole, for the test that polls for it
            wait_for((self.folder / "release").exists, HOLD_LIMIT_S)
        result = self.inner(clip)
        (self.folder / f"{key}.{pid}.done").touch()
        return result


class MarkedModel(Marked):
    """:class:`Marked` around a model stage (an actor on Ray): the same backends."""

    def __init__(
        self,
        cfg: PreprocessConfig,
        inner: Callable[[PreprocessConfig], ModelStage],
        folder: str,
        hold: str = "",
    ) -> None:
        self.model = inner(cfg)
        super().__init__(self.model, folder, hold)

    def backends(self) -> dict[str, Any]:
        return self.model.backends()


def marked_cpu(
    cfg: PreprocessConfig,
    run_meta: RunMeta,
    inner: Callable[[PreprocessConfig, RunMeta], StageFn],
    folder: str,
    hold: str = "",
) -> StageFn:
    """:class:`Marked` around a CPU stage (built in each Ray task)."""
    return Marked(inner(cfg, run_meta), folder, hold)


def with_marks(
    table: Sequence[Stage], name: str, folder: Path, hold: str = ""
) -> tuple[Stage, ...]:
    """``table`` with stage ``name`` wrapped in :class:`Marked` (same name and resources)."""
    folder.mkdir(parents=True, exist_ok=True)
    marked = []
    for s in table:
        if s.name == name and s.model is not None:
            model = functools.partial(MarkedModel, inner=s.model, folder=str(folder), hold=hold)
            s = replace(s, model=model)
        elif s.name == name and s.cpu is not None:
            cpu = functools.partial(marked_cpu, inner=s.cpu, folder=str(folder), hold=hold)
            s = replace(s, cpu=cpu)
        marked.append(s)
    assert any(s.name == name for s in table), f"no stage {name!r}"
    return tuple(marked)


def marks(folder: Path, what: str) -> dict[str, list[int]]:
    """Clip key -> PIDs that wrote a ``what`` (``start`` | ``done``) mark, in sorted order."""
    found: dict[str, list[int]] = {}
    for path in folder.glob(f"*.{what}"):
        key, pid, _ = path.name.rsplit(".", 2)
        found.setdefault(key, []).append(int(pid))
    return {k: sorted(v) for k, v in found.items()}
