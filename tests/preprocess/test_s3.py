"""``s3://`` inputs and outputs against a real S3-protocol server on loopback (moto's server).

The job lists the input prefix, reads the videos from the bucket, and writes shards and
Parquet tables into it; the output is read back from S3 with ``shards.reader`` and, copied
down, passes ``python -m shards validate``. Both runners: the Ray job (decode tasks read
from S3 in Ray workers, the driver uploads) and the in-process run, with the same keys.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest
import ray

from preprocess.config import PreprocessConfig
from preprocess.discover import discover
from preprocess.pipeline import run
from preprocess.ray_job import run_ray
from shards.config import load_config
from shards.reader import iter_samples, read_clips, read_videos, shard_paths
from shards.storage import filesystem, write_bytes
from tests.preprocess.ray_helpers import (
    CPU_PRESET,
    clip_keys,
    job_overrides,
    short_tmp,
    validates,
    vtest_videos,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def s3_videos(s3_server: str, vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    local = vtest_videos(vtest, tmp_path_factory.mktemp("videos"), n_videos=2, frames=24)
    for video in local:
        write_bytes(f"{s3_server}/videos/{video.name}", video.read_bytes())
    write_bytes(f"{s3_server}/videos/broken.mp4", b"not a video at all")
    return f"{s3_server}/videos/"


def test_discover_lists_a_prefix(s3_server: str, s3_videos: str) -> None:
    assert discover([s3_videos]) == [f"{s3_videos}{n}" for n in ("broken.mp4", "v0.mp4", "v1.mp4")]
    assert discover([f"{s3_videos}v1.mp4"]) == [f"{s3_videos}v1.mp4"]
    with pytest.raises(FileNotFoundError, match="no such object"):
        discover([f"{s3_server}/nothing/here"])


def test_ray_job_reads_and_writes_s3(
    s3_server: str, s3_videos: str, movenet_onnx: Path, tmp_path: Path
) -> None:
    overrides = job_overrides(movenet_onnx)
    out = f"{s3_server}/datasets/ray"
    with short_tmp() as tmp:
        ray.init(num_cpus=6, include_dashboard=False, _temp_dir=str(tmp / "ray"))
        try:
            summary = run_ray(
                [s3_videos], out, load_config(PreprocessConfig, CPU_PRESET, overrides)
            )
        finally:
            ray.shutdown()
    assert summary.status == {"ok": 2, "failed": 1}
    videos = {Path(r["source"]).name: r for r in read_videos(out).to_pylist()}
    assert videos["broken.mp4"]["error_stage"] == "decode"
    assert videos["v0.mp4"]["source"] == f"{s3_videos}v0.mp4"
    assert len(shard_paths(out)) == 4 and all(p.startswith("s3://") for p in shard_paths(out))
    samples = list(iter_samples(out, fields=["pose.npy", "mask.npz"]))
    assert sorted(s.key for s in samples) == clip_keys(out)
    assert sorted(s.pose.shape[0] for s in samples) == [8, 8, 16, 16]  # 24 frames: 16 + 8
    assert all(s.mask.shape[0] == s.pose.shape[0] for s in samples)

    local = tmp_path / "copy"
    pafs.copy_files(out.removeprefix("s3://"), str(local), source_filesystem=filesystem(out)[0])
    assert validates(local)

    # The in-process run on the same bucket: same clips; a re-run skips everything.
    out_local = f"{s3_server}/datasets/local"
    cfg = load_config(PreprocessConfig, CPU_PRESET, [*overrides, "run.runner=local"])
    assert run([s3_videos], out_local, cfg).status == {"ok": 2, "failed": 1}
    assert clip_keys(out_local) == clip_keys(out)
    assert run([s3_videos], out_local, cfg).skipped_done == 3
    assert read_clips(out_local).num_rows == 4
