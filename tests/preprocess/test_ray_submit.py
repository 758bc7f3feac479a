"""``ray job submit`` for real: a local head on loopback, the job submitted through
``jobs/submit_preprocess.sh`` (working dir + ``jobs/ray/runtime_env.yaml``), its output checked.

The head runs as ``ray start --head --block`` in its own process group, and is stopped by
signalling that group (not ``ray stop``, which would stop every Ray instance of the user on
this machine). Its PATH starts with this interpreter's folder: the job's ``python`` is the
environment Ray runs in, as on a cluster node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from shards.reader import read_videos
from tests.preprocess.ray_helpers import (
    CPU_PRESET,
    PYTHON,
    REPO,
    clip_keys,
    free_port,
    job_overrides,
    short_tmp,
    validates,
    vtest_videos,
)

pytestmark = pytest.mark.timeout(400)
RAY = str(Path(PYTHON).with_name("ray"))


def wait_for_dashboard(url: str, head: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert head.poll() is None, "ray start --head exited"
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no Ray dashboard at {url} after {seconds} s")


def stop_head(head: subprocess.Popen[bytes]) -> None:
    """SIGTERM the head's process group (``ray start --block`` shuts its node down), then
    SIGKILL whatever is left."""
    if head.poll() is None:
        os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)


def test_ray_job_submit_runs_the_job_on_a_real_head(
    vtest: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    (video,) = vtest_videos(vtest, tmp_path / "videos", n_videos=1, frames=32)
    out = tmp_path / "out"
    dashboard = free_port()
    url = f"http://127.0.0.1:{dashboard}"
    with short_tmp() as tmp:
        env = {
            **os.environ,
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_AUTH_MODE": "disabled",  # Ray 2.60 requires tokens otherwise
        }
        head_cmd = [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={tmp}",
            "--num-cpus=6",
            "--disable-usage-stats",
        ]
        with (tmp_path / "head.log").open("wb") as log:
            head = subprocess.Popen(
                head_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_dashboard(url, head)
            submit = subprocess.run(
                [
                    "bash",
                    "jobs/submit_preprocess.sh",
                    "--input",
                    str(video),
                    "--output",
                    str(out),
                    "--config",
                    str(CPU_PRESET),
                    *job_overrides(movenet_onnx),
                ],
                cwd=REPO,
                env={**env, "RAY_ADDRESS": url},
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            stop_head(head)
    logs = submit.stdout[-4000:] + submit.stderr[-4000:]
    assert submit.returncode == 0, logs
    assert "succeeded" in logs, logs
    assert "videos: {'ok': 1}" in submit.stdout, logs
    assert "joined the Ray cluster" in submit.stdout, logs
    assert read_videos(out).column("status").to_pylist() == ["ok"]
    assert len(clip_keys(out)) == 2
    assert validates(out)
