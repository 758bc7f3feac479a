"""The Ray job on a real multi-node Ray cluster: a head and two worker nodes on loopback.

``ray.cluster_utils.Cluster`` starts each node as its own raylet (its own processes, object
store and resources); the driver (this process) has no CPUs on the head, so every task,
actor and writer runs on the worker nodes, one writer per node. Small real videos (vtest.avi
cut short), MoveNet at a small input and one fused model actor keep the jobs short. The tests
check that:

- a job across the nodes writes what the in-process run writes (same clip keys, statistics
  and statuses), the driver receiving reports only;
- a worker node removed mid-job still ends the job normally (no exception), with exactly
  the in-process run's clips, none twice, no leftovers, and an output that validates. Kill
  points, each found by marks the stages leave (``ray_helpers.with_marks``), not by timing:
  ``model`` — the node of the fused model actor while it holds a clip in flight (in its pose
  stage); ``writer`` — the node of the writer that has a video open with its first clip
  through (its second clip held at geometry): nothing of that video may be visible after the
  kill, and the video is committed whole by a second pass over the uncommitted videos;
  ``inline`` — the node of the inline actor (every stage of a video, and its writer) while it
  holds a clip in its pose stage: its videos run again in a second pass, on a fresh actor.

A lost node ends Ray Data's pass over the videos at worst; the videos not committed are run
again in the same job (``preprocess.video_passes``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import ray
from ray._private.ray_constants import PROCESS_TYPE_RAYLET
from ray.cluster_utils import Cluster

from preprocess import stages
from preprocess.config import PreprocessConfig
from preprocess.pipeline import run
from preprocess.ray_job import run_ray
from preprocess.writers import writer_for, writer_prefix
from shards.config import load_config
from shards.reader import read_clips, read_videos
from shards.schema import STAGING_DIR
from tests.preprocess.ray_helpers import (
    COMPARED,
    CPU_PRESET,
    HOLD_LIMIT_S,
    clip_keys,
    job_overrides,
    short_tmp,
    validates,
    vtest_videos,
    wait_for,
    with_marks,
)

pytestmark = pytest.mark.timeout(420)
FUSED = ["run.extractors=fused"]
"""One fused model actor (pose, flow and depth in one process: fewer processes to start on
these 2 cores; the separate pools are tested in test_ray_job.py)."""
INLINE = ["run.extractors=inline"]
"""Every stage of a video in one actor, which writes its own shards (two actors, spread over
the worker nodes: ``ray_helpers.job_overrides``)."""
WORKER_CPUS = 6
"""Logical CPUs of a worker node: every actor and one task of each kind fit on one node, so
the job goes on when the other node is lost."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (no CPUs: the driver's node) and two worker nodes, one per module; tests that
    remove a node add one back."""
    with short_tmp() as tmp:
        head = {"num_cpus": 0, "include_dashboard": False, "temp_dir": str(tmp / "ray")}
        c = Cluster(initialize_head=True, head_node_args=head)
        try:
            for _ in range(2):
                c.add_node(num_cpus=WORKER_CPUS)
            c.wait_for_nodes()
            ray.init(address=c.address)
            yield c
        finally:
            ray.shutdown()
            c.shutdown()


@pytest.fixture(scope="module")
def videos(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    vtest_videos(vtest, folder, n_videos=3, frames=24)  # 2 clips each (16 + 8 frames)
    return folder


@pytest.fixture(scope="module")
def local_out(videos: Path, movenet_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The in-process run on the same videos and config."""
    out = tmp_path_factory.mktemp("local") / "out"
    cfg = load_config(PreprocessConfig, CPU_PRESET, [*job_overrides(movenet_onnx)])
    run([str(videos)], out, cfg)
    assert len(clip_keys(out)) == 6
    return out


def two_workers(c: Cluster) -> None:
    """Add a worker node back if a test removed one."""
    while len(c.worker_nodes) < 2:
        c.add_node(num_cpus=WORKER_CPUS)
    c.wait_for_nodes()


def node_of(c: Cluster, node_id: str) -> Any:
    (node,) = [n for n in c.worker_nodes if n.node_id == node_id]
    return node


def node_of_process(c: Cluster, pid: int) -> Any:
    """The worker node whose raylet started process ``pid`` (a worker or an actor)."""
    parents = {p.pid for p in psutil.Process(pid).parents()}
    for node in c.worker_nodes:
        if node.all_processes[PROCESS_TYPE_RAYLET][0].process.pid in parents:
            return node
    raise AssertionError(f"process {pid} belongs to no worker node of the cluster")


def check_output(out: Path, local: Path) -> None:
    """The in-process run's clips (keys, none twice, statistics), whole videos only, nothing
    left over, an output that validates."""
    assert clip_keys(out) == clip_keys(local)
    statuses = read_videos(out).column("status").to_pylist()
    assert sorted(statuses) == ["ok"] * 3, statuses
    a = read_clips(local, columns=COMPARED).sort_by("key").to_pandas()
    b = read_clips(out, columns=COMPARED).sort_by("key").to_pandas()
    np.testing.assert_allclose(a.bg_flow_mean, b.bg_flow_mean, rtol=1e-5)
    loose = ["bg_flow_mean", "pose_score_mean"]
    assert a.drop(columns=loose).equals(b.drop(columns=loose))
    assert not list(out.rglob("*.tmp")) and not (out / STAGING_DIR).exists()
    assert validates(out)


def test_a_job_across_nodes_writes_what_the_local_run_writes(
    cluster: Cluster, videos: Path, movenet_onnx: Path, local_out: Path, tmp_path: Path
) -> None:
    two_workers(cluster)
    cfg = load_config(PreprocessConfig, CPU_PRESET, [*job_overrides(movenet_onnx), *FUSED])
    summary = run_ray([str(videos)], tmp_path / "out", cfg)
    assert summary.status == {"ok": 3} and summary.frames == 3 * 24
    check_output(tmp_path / "out", local_out)
    shards = set(read_clips(tmp_path / "out").column("shard").to_pylist())
    assert {s.split("-")[1] for s in shards} <= {"w000", "w001"}
    assert 0 < summary.driver_bytes < 1024 * summary.frames  # reports only, no samples
    # Fused: a clip's pixels cross the object store once (decode -> extractors); after them
    # only keypoints, maps and the mp4 encoded in the decode task travel.
    assert 1.0 < summary.store_ratio() < 1.5, summary.store_ratio()


class NodeRemover(threading.Thread):
    """Removes a worker node as soon as the marks say the kill point is reached: ``model``,
    the node of the actor holding the held clip; ``writer``, the node of the writer that
    has the held clip's video open with its first clip through (half a video staged). Then
    checks that nothing of that video is visible, and releases the held clip (if it was not
    on the lost node, it goes on)."""

    def __init__(self, c: Cluster, kill_point: str, marks: Path, out: Path) -> None:
        super().__init__(daemon=True)
        self.c, self.kill_point, self.marks, self.out = c, kill_point, marks, out
        self.removed = ""
        self.problem = "nothing was held"

    def run(self) -> None:
        try:
            self.remove()
        finally:
            (self.marks / "release").touch()

    def remove(self) -> None:
        held = self.marks / "held"
        if not wait_for(held.exists, HOLD_LIMIT_S):
            return
        key, _, node_id = held.read_text().split()
        video_id = key.split("_")[0]
        if self.kill_point == "writer":
            prefix = writer_prefix(writer_for(video_id, n_writers=2))
            first_done = f"{video_id}_{0:07d}."  # geometry finished the video's first clip
            if not wait_for(
                lambda: (
                    any(self.marks.glob(f"{first_done}*.done"))
                    and any((self.out / STAGING_DIR).glob(f"{prefix}-*/*.tar"))
                ),
                HOLD_LIMIT_S,
            ):
                self.problem = f"video {video_id} was never staged by writer {prefix}"
                return
            folder = next((self.out / STAGING_DIR).glob(f"{prefix}-*/*.tar")).parent.name
            node = node_of_process(self.c, int(folder.split("-")[-2]))  # PREFIX-PID-TOKEN
        else:
            node = node_of(self.c, node_id)
        self.c.remove_node(node)
        self.removed = key
        try:
            visible = set(read_clips(self.out).column("video_id").to_pylist())
        except FileNotFoundError:
            visible = set()
        self.problem = (
            f"clips of {video_id} visible before it was whole" if video_id in visible else ""
        )


@pytest.mark.parametrize("kill_point", ["model", "writer", "inline"])
def test_a_lost_node_does_not_end_the_job(
    cluster: Cluster,
    videos: Path,
    movenet_onnx: Path,
    local_out: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kill_point: str,
) -> None:
    two_workers(cluster)
    marks, out = tmp_path / "marks", tmp_path / "out"
    # model: v1.mp4's first clip held in the fused actor's pose stage; writer: v2.mp4's second clip held at
    # geometry, so its first clip sits staged (half a video) in its writer.
    # inline: v1.mp4's first clip held in the pose stage of the inline actor that has it.
    stage, hold = ("geometry", "v2.mp4:1") if kill_point == "writer" else ("pose", "v1.mp4:0")
    monkeypatch.setattr(stages, "STAGES", with_marks(stages.STAGES, stage, marks, hold=hold))
    layout = INLINE if kill_point == "inline" else FUSED
    cfg = load_config(PreprocessConfig, CPU_PRESET, [*job_overrides(movenet_onnx), *layout])
    remover = NodeRemover(cluster, "writer" if kill_point == "writer" else "model", marks, out)
    remover.start()
    summary = run_ray([str(videos)], out, cfg)  # no exception: the job survives the node
    remover.join(timeout=HOLD_LIMIT_S)
    assert remover.removed and not remover.problem, remover.problem
    assert summary.status == {"ok": 3}
    if kill_point != "model":  # the lost videos can only be committed by another pass
        assert summary.passes == 2
    check_output(out, local_out)
