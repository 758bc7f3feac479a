"""The Ray job on a real local Ray instance (one per module), against the in-process run.

Same inputs, same config: the Ray Data pipeline must write what the local run writes (clip
keys, statistics, video statuses and failure stages) even when a pose actor is killed
mid-run, commit only whole videos (in the writer actor's own shards; the driver receives
reports only), skip finished videos on a re-run, and turn stage failures and timeouts into
``failed`` rows. Multi-node runs and node loss: ``test_cluster.py``. The first test also adds a model stage to the stage table
(one entry, ``ray_helpers.with_audit_stage``): both runners must run it, time it and report
its failures alike; and it marks the pose stage (``ray_helpers.with_marks``): the first clip
of v0.mp4 is held in its pose actor, that actor process is killed (SIGKILL) while the clip is
in flight, and the marks show the clip started again in another process and finished there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import ray

from preprocess import stages
from preprocess.clip import EncodedClip, StageError, VideoInfo, video_id_for
from preprocess.config import PreprocessConfig, ShardConfig
from preprocess.deadline import within_deadline
from preprocess.pipeline import run
from preprocess.pose.precomputed import write_sidecar
from preprocess.ray_job import cpus_needed, run_ray
from preprocess.runner import RunSummary
from preprocess.stages import stage_names
from preprocess.transit import Item, from_row, to_row
from preprocess.writers import VideoWriter, writer_prefix
from shards.config import load_config
from shards.reader import read_clips, read_videos
from tests.preprocess.ray_helpers import (
    COMPARED,
    CPU_PRESET,
    HOLD_LIMIT_S,
    PYTHON,
    clip_keys,
    job_overrides,
    marks,
    short_tmp,
    validates,
    vtest_videos,
    wait_for,
    with_audit_stage,
    with_marks,
)
from tests.shards.synthetic import FPS, H, W, encoded_clip

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module; ``run_ray`` joins it instead of starting one."""
    with short_tmp() as tmp:
        # Logical CPUs: enough for every actor of these tests plus the decode and geometry
        # tasks (the OS shares the real cores among them).
        ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(tmp / "ray"))
        try:
            yield
        finally:
            ray.shutdown()


class ActorKiller(threading.Thread):
    """Kills (SIGKILL) the process that holds the marked stage's held clip as soon as its
    ``held`` file appears: a real crash with that clip in flight, which Ray must survive by
    restarting the actor and retrying its task. Only a process of this test's own Ray
    instance (a descendant of this process) is killed."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.killed: tuple[str, int] | None = None
        """(clip key, PID) of the attempt that was killed."""
        self.problem = "no clip was held"
        self.stop = threading.Event()

    def run(self) -> None:
        held = self.folder / "held"
        wait_for(lambda: held.exists() or self.stop.is_set(), HOLD_LIMIT_S)
        if not held.exists():
            return
        key, pid = held.read_text().split()[:2]
        if int(pid) not in {p.pid for p in psutil.Process().children(recursive=True)}:
            self.problem = f"{key} is held by {pid}, not a process of this test: not killed"
            return
        os.kill(int(pid), signal.SIGKILL)
        self.killed = (key, int(pid))


def run_killing_the_holder(
    videos: Path, out: Path, cfg: PreprocessConfig, folder: Path
) -> tuple[RunSummary, tuple[str, int]]:
    """``run_ray`` while an :class:`ActorKiller` kills the process holding the marked clip:
    the summary, and (clip key, PID) of the attempt killed."""
    killer = ActorKiller(folder)
    killer.start()
    try:
        summary = run_ray([str(videos)], out, cfg)
    finally:
        killer.stop.set()
        (folder / "release").touch()  # a held clip whose actor was not killed goes on
        killer.join()
    assert killer.killed is not None, killer.problem
    return summary, killer.killed


@pytest.fixture(scope="module")
def videos(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    good = vtest_videos(vtest, folder, n_videos=2, frames=24)
    (folder / "bad.mp4").write_bytes(good[1].read_bytes())  # fails at the added audit stage
    (folder / "zero.mp4").write_bytes(b"")
    data = good[0].read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture(scope="module")
def local_out(
    videos: Path, movenet_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RunSummary]:
    """The in-process run of ``videos`` with one entry added to the stage table: a model stage
    that fails on bad.mp4 (both runners must run it, time it and report its failure)."""
    out = tmp_path_factory.mktemp("local") / "out"
    overrides = [*job_overrides(movenet_onnx), "run.runner=local"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "STAGES", with_audit_stage(before="geometry"))
        summary = run([str(videos)], out, load_config(PreprocessConfig, CPU_PRESET, overrides))
    return out, summary


def same_as_local(out: Path, local: Path) -> None:
    """The local run's videos (status, failure stage, clips) and clips (keys, none twice,
    statistics), in an output that validates."""
    by_name = {Path(r["source"]).name: r for r in read_videos(out).to_pylist()}
    expected = {Path(r["source"]).name: r for r in read_videos(local).to_pylist()}
    assert sorted(by_name) == sorted(expected)
    for name, row in expected.items():
        got = by_name[name]
        assert (got["status"], got["error_stage"], got["n_clips"]) == (
            row["status"],
            row["error_stage"],
            row["n_clips"],
        ), name
    a = read_clips(local, columns=COMPARED).sort_by("key").to_pandas()
    b = read_clips(out, columns=COMPARED).sort_by("key").to_pandas()
    assert list(a.key) == clip_keys(out)  # same keys, no duplicates
    np.testing.assert_allclose(a.bg_flow_mean, b.bg_flow_mean, rtol=1e-5)
    assert a.drop(columns=["bg_flow_mean", "pose_score_mean"]).equals(
        b.drop(columns=["bg_flow_mean", "pose_score_mean"])
    )
    assert validates(out)


def test_ray_job_writes_what_the_local_run_writes(
    local_ray: None,
    videos: Path,
    movenet_onnx: Path,
    local_out: tuple[Path, RunSummary],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = with_audit_stage(before="geometry")
    local_path, local = local_out
    # Separate pools; a GPU fraction on this GPU-less instance must fall back to CPU, not
    # wait forever.
    separate = ["run.extractors=separate", "run.pose_actors=2", "run.flow_gpus=0.5"]
    ray_cfg = load_config(PreprocessConfig, CPU_PRESET, [*job_overrides(movenet_onnx), *separate])
    # The Ray run: the pose stage marked, the first clip of v0.mp4 held until its actor dies.
    folder = tmp_path / "marks"
    monkeypatch.setattr(stages, "STAGES", with_marks(table, "pose", folder, hold="v0.mp4:0"))
    summary, (key, killed) = run_killing_the_holder(videos, tmp_path / "ray", ray_cfg, folder)
    started, done = marks(folder, "start"), marks(folder, "done")
    assert len(started[key]) == 2 and killed in started[key], started[key]  # tried twice
    (retry,) = set(started[key]) - {killed}
    assert done[key] == [retry], done[key]  # finished by the retry, in another process
    assert set(clip_keys(tmp_path / "ray")) <= set(done)

    assert summary.status == local.status == {"ok": 2, "failed": 3}
    assert summary.clips == local.clips == 4 and summary.frames == 48
    assert {stage for _, stage, _ in summary.failures} == {"decode", "audit"}
    assert summary.reasons()[("audit", "ValueError")] == 1
    for s in (summary, local):  # the added stage is timed in the actors like the others
        assert list(s.stage_seconds) == [*stage_names()] and s.stage_seconds["audit"] >= 0.08
    assert cpus_needed(ray_cfg.run) == 1 + 2 + 1 + 0.25 + 0.25 + 1  # decode, actors, task
    same_as_local(tmp_path / "ray", local_path)
    assert "frames/s per stage: decode" in summary.format()
    # The writer actor wrote the shards under its own prefix; the driver got reports only
    # (a few hundred bytes per video, against ~0.3 MB of raw frames per stored frame here).
    assert {c.split("-")[1] for c in read_clips(tmp_path / "ray").column("shard").to_pylist()} == {
        "w000"
    }
    assert 0 < summary.driver_bytes < 1024 * summary.frames
    assert summary.store_ratio() > 2  # separate pools: a clip's frames cross at every stage

    monkeypatch.setattr(stages, "STAGES", table)
    again = run_ray([str(videos)], tmp_path / "ray", ray_cfg)
    assert again.skipped_done == 5 and again.clips == 0
    assert clip_keys(tmp_path / "ray") == clip_keys(local_path)


def test_the_inline_layout_writes_what_the_local_run_writes(
    local_ray: None,
    videos: Path,
    movenet_onnx: Path,
    local_out: tuple[Path, RunSummary],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every stage of a video in one actor that writes its own shards; the actor holding the
    first clip of v0.mp4 in its pose stage is killed: its videos run again in a second pass,
    on a fresh actor, and the output is the local run's."""
    local_path, local = local_out
    folder = tmp_path / "marks"
    table = with_marks(with_audit_stage(before="geometry"), "pose", folder, hold="v0.mp4:0")
    monkeypatch.setattr(stages, "STAGES", table)
    # One actor: after the kill, only a fresh actor in its place can do the second pass.
    overrides = [*job_overrides(movenet_onnx), "run.extractors=inline", "run.inline_actors=1"]
    cfg = load_config(PreprocessConfig, CPU_PRESET, overrides)
    summary, (key, killed) = run_killing_the_holder(videos, tmp_path / "ray", cfg, folder)
    started, done = marks(folder, "start"), marks(folder, "done")
    assert killed in started[key] and len(done[key]) == 1, (started[key], done[key])
    assert done[key] != [killed]  # finished by another process: the second pass's actor
    assert summary.passes == 2
    assert summary.status == local.status == {"ok": 2, "failed": 3}
    assert summary.clips == local.clips == 4 and summary.frames == 48
    assert summary.stage_seconds["audit"] >= 0.08  # the added stage is timed in the actors too
    same_as_local(tmp_path / "ray", local_path)
    shards = read_clips(tmp_path / "ray").column("shard").to_pylist()
    assert {c.split("-")[1] for c in shards} == {"w000"}  # the actor's own prefix
    assert 0 < summary.driver_bytes < 1024 * summary.frames
    assert summary.store_ratio() == 0  # neither frames nor samples cross the object store


def test_the_inline_actors_start_one_video_each(
    local_ray: None, vtest: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    """Two videos, two actors: each actor gets one at once (the second video would otherwise
    wait in the first actor's queue while the other actor idles)."""
    folder = tmp_path / "videos"
    vtest_videos(vtest, folder, n_videos=2, frames=16)
    overrides = [*job_overrides(movenet_onnx), "run.extractors=inline"]
    summary = run_ray(
        [str(folder)], tmp_path / "out", load_config(PreprocessConfig, CPU_PRESET, overrides)
    )
    assert summary.status == {"ok": 2}
    shards = read_clips(tmp_path / "out").column("shard").to_pylist()
    assert sorted(s.split("-")[1] for s in shards) == ["w000", "w001"]


def test_stage_failures_and_timeouts_become_failed_rows(
    local_ray: None, vtest: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "videos"
    with_poses, without_poses = vtest_videos(vtest, folder, n_videos=2, frames=16)
    keypoints = np.zeros((16, 1, 17, 3), np.float32)
    keypoints[:, 0, :, :2] = np.linspace(50, 150, 17)[None, :, None]
    keypoints[..., 2] = 0.9
    write_sidecar(with_poses.with_suffix(".pose.npz"), keypoints)
    overrides = [*job_overrides(movenet_onnx), "pose.backend=precomputed"]
    cfg = load_config(PreprocessConfig, CPU_PRESET, overrides)
    summary = run_ray([str(folder)], tmp_path / "out", cfg)
    rows = {Path(r["source"]).name: r for r in read_videos(tmp_path / "out").to_pylist()}
    assert rows[with_poses.name]["status"] == "ok"
    assert rows[without_poses.name]["status"] == "failed"
    assert rows[without_poses.name]["error_stage"] == "pose"
    assert "FileNotFoundError" in rows[without_poses.name]["error"]
    assert set(read_clips(tmp_path / "out").column("video_id").to_pylist()) == {
        rows[with_poses.name]["video_id"]
    }
    assert summary.reasons() == {("pose", "FileNotFoundError"): 1}
    assert validates(tmp_path / "out")

    # Every stage of a 16-frame video takes longer than 1 ms: cut off, recorded, run goes on.
    slow = load_config(PreprocessConfig, CPU_PRESET, [*overrides, "run.video_timeout_s=0.001"])
    summary = run_ray([str(folder)], tmp_path / "timeout", slow)
    assert summary.status == {"failed": 2}
    for row in read_videos(tmp_path / "timeout").to_pylist():
        assert row["error_stage"] in stage_names() and row["error"].startswith("timeout"), row
    assert read_clips(tmp_path / "timeout").num_rows == 0
    assert validates(tmp_path / "timeout")


def test_a_hanging_call_is_cut_off_at_the_deadline() -> None:
    """The caller gets the timeout while the call is still blocked (it cannot return before
    the test releases it), not when it ends; no clock is read by the assertions."""
    release = threading.Event()
    calls: list[str] = []

    def hang() -> str:
        calls.append("started")
        release.wait()  # until the test lets it go: only the deadline can end the wait
        calls.append("returned")
        return "done"

    try:
        with pytest.raises(StageError, match="ran out while this stage was running") as info:
            within_deadline("flow", time.time() + 0.3, hang, timeout_s=0.3)
        assert info.value.stage == "flow" and "returned" not in calls
        with pytest.raises(StageError, match="ran out before this stage started"):
            within_deadline("flow", time.time() - 1.0, calls.append, "called late")
        assert "called late" not in calls
    finally:
        release.set()
    # A generous deadline only bounds a hang: results and exceptions pass through.
    assert within_deadline("flow", time.time() + 3600, sum, [1, 2]) == 3
    with pytest.raises(ZeroDivisionError):
        within_deadline("flow", time.time() + 3600, divmod, 1, 0)


def test_importing_preprocess_does_not_import_ray() -> None:
    code = (
        "import sys, preprocess.__main__, preprocess.pipeline, preprocess.runner, "
        "preprocess.stages, shards.writer; "
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_ray_job_module_does_not_import_torch() -> None:
    """Every Ray worker imports ``preprocess.ray_job``; torch (about 1 s and 200 MB each,
    pulled in by webdataset's package) is imported only where a tar is written or a stage
    needs it."""
    code = "import sys, preprocess.ray_job; print('torch' in sys.modules)"
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


SOURCES = {video_id_for(s): s for s in ("/videos/a.mp4", "/videos/b.mp4")}


def _info(vid: str) -> VideoInfo:
    return VideoInfo(SOURCES[vid], vid, W, H, FPS, 64, 0, W, H, FPS)


def _clip_item(vid: str, index: int, error: tuple[str, str] | None = None) -> Item:
    fields, row = encoded_clip(vid, index)
    encoded = None if error else EncodedClip(row.key, fields, row)
    item = Item("clip", vid, SOURCES[vid], 0.0, None, encoded=encoded, index=index, error=error)
    return from_row(to_row(item))  # as it travels


def test_a_writer_commits_whole_videos_whatever_the_arrival_order(tmp_path: Path) -> None:
    """Clips out of order, a clip emitted twice and an end row re-emitted after the commit
    (retried tasks), a video whose later stage failed on one clip; and a restarted writer
    that gets a committed video again writes nothing twice."""
    a, b = SOURCES
    shards = ShardConfig(max_clips=8)
    writer = VideoWriter(str(tmp_path), shards, index=3)
    reports = []
    end_a = Item("end", a, SOURCES[a], 0.0, None, info=_info(a), index=3)
    for item in [_clip_item(a, 2), end_a, _clip_item(b, 0), _clip_item(a, 0)]:
        reports += writer.add(item)
    assert set(writer.assembler.open) == {a, b} and not reports
    reports += writer.add(_clip_item(a, 0))  # again: ignored
    reports += writer.add(_clip_item(b, 1, error=("flow", "ValueError: bad")))
    reports += writer.add(_clip_item(a, 1))  # the last one: a is committed
    assert set(writer.assembler.open) == {b} and [r.row.video_id for r in reports] == [a]
    assert len(reports[0].times) == 3 and reports[0].row.n_clips == 3
    reports += writer.add(end_a)  # a retried decode task's end row: a is done already
    reports += writer.add(Item("end", b, SOURCES[b], 0.0, None, info=_info(b), index=2))
    assert [(r.row.video_id, r.row.status) for r in reports] == [(a, "ok"), (b, "failed")]
    assert writer.close() == [f"{writer_prefix(3)}-000000.tar"]
    # A writer started after the commit (a restarted actor) ignores the committed videos.
    again = VideoWriter(str(tmp_path), shards, index=3)
    for i in range(3):
        assert again.add(_clip_item(a, i)) == []
    assert again.add(end_a) == [] and again.close() == []
    rows = {r["video_id"]: r for r in read_videos(tmp_path).to_pylist()}
    assert rows[a]["status"] == "ok" and rows[a]["n_clips"] == 3
    assert (rows[b]["status"], rows[b]["error_stage"]) == ("failed", "flow")
    assert sorted(read_clips(tmp_path).column("clip_index").to_pylist()) == [0, 1, 2]
    assert len(read_videos(tmp_path)) == 2
    assert validates(tmp_path)
