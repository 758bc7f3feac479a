"""Resume: a job killed mid-way and re-run writes exactly what an uninterrupted run writes.

The Ray job runs as ``python -m preprocess`` (through ``tests.preprocess.marked_job``, which
marks its geometry stage) in its own process group, its local Ray instance with it. The
second clip of v3.mp4 is held in flight; once at least one video is finished (its row is in
``stats/videos``, polled) the job is killed with SIGKILL. The re-run must skip the finished
videos (its summary says so, and no clip of theirs is processed again: the marks), leave
every shard and Parquet file committed before the kill byte-identical, redo the others, and
end with the clean run's clips, no duplicates, no tmp or staging leftovers, and an output
that validates. A changed config or model is refused, an output of another format version
always.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from preprocess.config import PreprocessConfig
from preprocess.pipeline import run
from preprocess.runner import BACKENDS_FILE, ConfigMismatchError
from shards.config import load_config
from shards.reader import read_clips, read_videos
from shards.schema import (
    CLIPS_DIR,
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    SHARDS_DIR,
    VIDEOS_DIR,
    FormatVersionError,
)
from tests.preprocess.ray_helpers import (
    COMPARED,
    CPU_PRESET,
    PYTHON,
    REPO,
    clip_keys,
    job_overrides,
    marks,
    short_tmp,
    validates,
    vtest_videos,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)
HELD = "v3.mp4:1"
"""The clip kept in flight when the job is killed: v3.mp4's second (last) clip."""


def start_job(
    inputs: Path,
    out: Path,
    overrides: list[str],
    marks_dir: Path,
    hold: str,
    env: dict[str, str],
    log: Path,
) -> subprocess.Popen[bytes]:
    """The Ray job, its geometry stage marked into ``marks_dir`` (clip ``hold`` held)."""
    args = ["--config", str(CPU_PRESET), "--input", str(inputs), "--output", str(out)]
    marked = ["--marks", str(marks_dir), "--stage", "geometry", "--hold", hold, "--"]
    # 12 logical CPUs: a held geometry task keeps one, the other clips' tasks still fit.
    knobs = ["run.num_cpus=12", "run.pose_actors=2"]  # run.*: not compared on resume
    with log.open("wb") as sink:  # a file, not a pipe: nobody reads while the job runs
        return subprocess.Popen(
            [PYTHON, "-m", "tests.preprocess.marked_job", *marked, *args, *overrides, *knobs],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the job and its Ray instance
        )


def finished_videos(out: Path) -> list[str]:
    """Video ids of the ``stats/videos`` rows committed so far."""
    try:
        return [str(v) for v in read_videos(out).column("video_id").to_pylist()]
    except FileNotFoundError:
        return []


def committed_files(out: Path) -> dict[str, str]:
    """sha256 of every committed file: the Parquet files, and the tars whose clips Parquet
    file exists (a tar without one is an orphan that the re-run deletes)."""
    clips = out / CLIPS_DIR
    files = [*clips.glob("*.parquet"), *(out / VIDEOS_DIR).glob("*.parquet")]
    files += [t for t in (out / SHARDS_DIR).glob("*.tar") if (clips / f"{t.stem}.parquet").exists()]
    return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_killed_ray_job_resumes_to_the_clean_run(
    vtest: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    vtest_videos(vtest, videos, n_videos=4, frames=32)  # 2 clips each, one shard per clip
    overrides = job_overrides(movenet_onnx)
    clean = tmp_path / "clean"
    run([str(videos)], clean, load_config(PreprocessConfig, CPU_PRESET, overrides))
    expected = clip_keys(clean)
    assert len(expected) == 8

    out, first, second = tmp_path / "out", tmp_path / "marks-killed", tmp_path / "marks-rerun"
    with short_tmp() as tmp:
        env = {**os.environ, "RAY_TMPDIR": str(tmp)}
        job = start_job(videos, out, overrides, first, HELD, env, tmp_path / "killed.log")
        try:  # until a clip is held in flight and at least one video is finished
            ready = wait_for(
                lambda: (
                    job.poll() is not None
                    or ((first / "held").exists() and bool(finished_videos(out)))
                ),
                limit_s=300,
            )
            running = job.poll() is None
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        log = (tmp_path / "killed.log").read_text()[-3000:]
        assert ready and running, f"the job ended or hung before it could be killed:\n{log}"
        done = finished_videos(out)
        held_key = (first / "held").read_text().split()[0]
        before = committed_files(out)
        committed = read_clips(out, columns=["key", "video_id", "shard"]).to_pylist()
        assert held_key not in {c["key"] for c in committed}

        rerun = start_job(videos, out, overrides, second, "", env, tmp_path / "rerun.log")
        rerun.wait(timeout=400)
        log = (tmp_path / "rerun.log").read_text()
        assert rerun.returncode == 0, log[-3000:]

    # The skip path ran: said by the run and its summary, and no clip of a finished video
    # was processed again (while every clip of the others was).
    n = len(done)
    assert f"4 inputs, {n} already done, {4 - n} to process" in log
    assert f"(+{n} already done)" in log
    rerun_done = marks(second, "done")
    finished_keys = {c["key"] for c in committed if c["video_id"] in done}
    assert finished_keys and not finished_keys & set(marks(second, "start"))
    assert set(rerun_done) == set(expected) - finished_keys and held_key in rerun_done
    # What was committed before the kill is untouched: the finished videos' shards among it.
    assert {f"{SHARDS_DIR}/{c['shard']}" for c in committed if c["video_id"] in done} <= set(before)
    after = committed_files(out)
    changed = sorted(f for f, digest in before.items() if after.get(f) != digest)
    assert not changed, f"committed before the kill, changed or gone after it: {changed}"
    # And the output is the clean run's.
    assert clip_keys(out) == expected  # same keys, none twice
    assert sorted(read_videos(out).column("status").to_pylist()) == ["ok"] * 4
    a = read_clips(clean, columns=COMPARED).sort_by("key").to_pandas()
    b = read_clips(out, columns=COMPARED).sort_by("key").to_pandas()
    np.testing.assert_allclose(a.bg_flow_mean, b.bg_flow_mean, rtol=1e-5)
    loose = ["bg_flow_mean", "pose_score_mean"]
    assert a.drop(columns=loose).equals(b.drop(columns=loose))
    assert not list(out.rglob("*.tmp")) and not (out / ".staging").exists()
    assert validates(out)


def test_changed_config_or_model_is_refused_unless_allowed(
    vtest: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    vtest_videos(vtest, videos, n_videos=1, frames=16)
    out = tmp_path / "out"
    overrides = [*job_overrides(movenet_onnx), "run.runner=local"]
    run([str(videos)], out, load_config(PreprocessConfig, CPU_PRESET, overrides))

    # run.* knobs change how the job runs, not what it writes: no refusal.
    more_actors = load_config(PreprocessConfig, CPU_PRESET, [*overrides, "run.pose_actors=3"])
    assert run([str(videos)], out, more_actors).skipped_done == 1

    changed = load_config(PreprocessConfig, CPU_PRESET, [*overrides, "geometry.dilation=0.1"])
    with pytest.raises(ConfigMismatchError, match=r"geometry\.dilation: 0\.05 -> 0\.1"):
        run([str(videos)], out, changed)

    # Other weights under the same path: the stored sha256 no longer matches.
    stored = json.loads((out / BACKENDS_FILE).read_text())
    assert stored[FORMAT_VERSION_KEY] == FORMAT_VERSION
    assert len(stored["pose"]["sha256"]) == 64
    stored["pose"]["sha256"] = "0" * 64
    (out / BACKENDS_FILE).write_text(json.dumps(stored))
    cfg = load_config(PreprocessConfig, CPU_PRESET, overrides)
    with pytest.raises(ConfigMismatchError, match=r"backends\.pose\.sha256: '0000"):
        run([str(videos)], out, cfg)
    assert run([str(videos)], out, cfg, allow_config_change=True).skipped_done == 1

    # An output of another format version is refused, even with --allow-config-change.
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config[FORMAT_VERSION_KEY] == FORMAT_VERSION
    for version, what in ((FORMAT_VERSION - 1, "older"), (FORMAT_VERSION + 1, "newer")):
        config[FORMAT_VERSION_KEY] = version
        (out / "config.yaml").write_text(yaml.safe_dump(config))
        with pytest.raises(FormatVersionError, match=rf"config\.yaml: format version .* {what}"):
            run([str(videos)], out, cfg, allow_config_change=True)
    config[FORMAT_VERSION_KEY] = FORMAT_VERSION
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    stored[FORMAT_VERSION_KEY] = FORMAT_VERSION + 1
    (out / BACKENDS_FILE).write_text(json.dumps(stored))
    with pytest.raises(FormatVersionError, match=r"backends\.json: format version"):
        run([str(videos)], out, cfg, allow_config_change=True)
