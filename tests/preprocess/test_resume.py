"""Resume: a job killed mid-way and re-run writes exactly what an uninterrupted run writes.

The Ray job runs as ``python -m preprocess`` in its own process group (its local Ray instance
with it) and is killed with SIGKILL once some clips are committed; the re-run must skip the
finished videos, redo the others, and end with the clean run's clip keys, no duplicates, no
tmp or staging leftovers, and an output that validates. A changed config or model is refused,
an output of another format version always.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from preprocess.config import PreprocessConfig
from preprocess.pipeline import run
from preprocess.runner import BACKENDS_FILE, ConfigMismatchError
from shards.config import load_config
from shards.reader import read_videos
from shards.schema import FORMAT_VERSION, FORMAT_VERSION_KEY, FormatVersionError
from tests.preprocess.ray_helpers import (
    CPU_PRESET,
    PYTHON,
    REPO,
    clip_keys,
    job_overrides,
    short_tmp,
    validates,
    vtest_videos,
)

pytestmark = pytest.mark.timeout(400)


def start_job(
    inputs: Path, out: Path, overrides: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    args = ["--config", str(CPU_PRESET), "--input", str(inputs), "--output", str(out)]
    with log.open("wb") as sink:  # a file, not a pipe: nobody reads while the job runs
        return subprocess.Popen(
            [PYTHON, "-m", "preprocess", *args, *overrides],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the job and its Ray instance
        )


def committed_shards(out: Path) -> int:
    folder = out / "stats" / "clips"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


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

    out = tmp_path / "out"
    with short_tmp() as tmp:
        env = {**os.environ, "RAY_TMPDIR": str(tmp)}
        job = start_job(videos, out, overrides, env, tmp_path / "killed.log")
        deadline = time.monotonic() + 240
        while committed_shards(out) < 1 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        finished_first = job.poll() is not None
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        log = (tmp_path / "killed.log").read_text()[-3000:]
        assert not finished_first, f"the job ended before it could be killed:\n{log}"
        killed_at = committed_shards(out)
        assert 1 <= killed_at < 8, log
        done_at_kill = read_videos(out).num_rows  # videos whose rows made it before the kill

        rerun = start_job(videos, out, overrides, env, tmp_path / "rerun.log")
        rerun.wait(timeout=300)
        log = (tmp_path / "rerun.log").read_text()
        assert rerun.returncode == 0, log[-3000:]
    assert f"4 inputs, {done_at_kill} already done, {4 - done_at_kill} to process" in log
    assert clip_keys(out) == expected  # same keys, none twice
    assert sorted(read_videos(out).column("status").to_pylist()) == ["ok"] * 4
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
