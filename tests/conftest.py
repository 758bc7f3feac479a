"""Shared fixtures. Real assets come from MCANIM_ASSETS (default ../shared/assets).

Tests that need them fail (never skip) when the folder is missing: CI must not go green
without having looked at real data. ``s3_server`` is a real S3-protocol server (moto) on
loopback for the ``s3://`` tests; every test leaves the logging setup as it found it.

Hypothesis profiles: ``ci`` (derandomized: the same examples on every run, so a red test is
reproducible; no example database) is loaded when ``HYPOTHESIS_PROFILE=ci`` (``make test``
and so ``.ci/run`` set it) or ``CI`` is set (CI services do); ``dev`` (random examples: each
run explores new ones) otherwise, e.g. a plain ``pytest``. Neither has a per-example deadline
or the too-slow health check: both are wall-clock limits that a loaded machine trips at
random.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from preprocess.weights import assets_dir

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(scope="session")
def assets() -> Path:
    """The real assets folder (:func:`preprocess.weights.assets_dir`); fails when missing."""
    path = assets_dir()
    if not (path / "README.md").is_file():
        raise FileNotFoundError(
            f"test assets not found at {path}: set MCANIM_ASSETS to the shared assets folder "
            "(videos/vtest.avi, models/movenet_multipose.onnx, images/coco_wholebody/...)"
        )
    return path


@pytest.fixture(scope="session")
def vtest(assets: Path) -> Path:
    return assets / "videos" / "vtest.avi"


@pytest.fixture(scope="session")
def dance(assets: Path) -> Path:
    return assets / "videos" / "dance_single.mp4"


@pytest.fixture(scope="session")
def movenet_onnx(assets: Path) -> Path:
    return assets / "models" / "movenet_multipose.onnx"


S3_BUCKET = "mcanim-test"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """``s3://mcanim-test``: an empty bucket of a moto S3 server on 127.0.0.1 (fresh state
    for each test module), with the AWS variables pointing at it for the module's tests (set
    before any Ray worker starts, so workers inherit them)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its state per process, across servers: start each module from nothing.
    reset = urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    variables = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
    try:
        yield f"s3://{S3_BUCKET}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Entry points called in tests (``main([...])``) set up logging; undo it afterwards."""
    names = ["", "preprocess", "shards", "model", "train"]
    levels = {n: logging.getLogger(n).level for n in names}
    handlers = list(logging.getLogger().handlers)
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
