"""The streaming loader against the preprocessing geometry, the Parquet stats and resumption."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
import torch
import yaml

from model.config import preset_config
from model.guiders import GUIDER_NAMES, Conditions
from preprocess.geometry import (
    GeometryConfig,
    depth_order_map,
    dilation_masks,
    flow_guider_input,
    union_mask,
)
from preprocess.geometry.render import render_pose
from shards.reader import iter_samples
from shards.schema import FORMAT_VERSION, FormatVersionError
from tests.train.helpers import write_train_output
from train.config import DataConfig
from train.loader import (
    ClipStream,
    Selection,
    collate,
    dataset_geometry,
    make_loader,
    select_clips,
)

SIZE = (64, 48)  # training canvas (height, width): portrait crop of the 48x64 stored clips
VIDEOS = [[1, 2], [3, 1, 1], [2, 2], [1]]  # people per clip, one list per video
BROKEN = {"0000000000000002_0000008": "mp4", "0000000000000003_0000000": "short"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train_out")
    write_train_output(out, VIDEOS, broken=BROKEN)
    return out


def data_cfg(root: Path | str, **kw: object) -> DataConfig:
    defaults: dict[str, object] = {
        "root": str(root),
        "height": SIZE[0],
        "width": SIZE[1],
        "workers": 0,
        "shuffle_buffer": 4,
    }
    return DataConfig(**{**defaults, **kw})  # type: ignore[arg-type]


def stream(cfg: DataConfig, selection: Selection, frames: int = 1, **kw: object) -> ClipStream:
    return ClipStream(cfg, selection, frames, GeometryConfig(), preset_config("tiny"), **kw)  # type: ignore[arg-type]


def canvas_keypoints(kps: np.ndarray, source: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    """Resize-to-cover + centre-crop of keypoints, written out here (pixel centre to centre)."""
    (sh, sw), (h, w) = source, SIZE
    scale = max(h / sh, w / sw)
    rh, rw = max(h, round(sh * scale)), max(w, round(sw * scale))
    y0, x0 = (rh - h) // 2, (rw - w) // 2
    out = kps.copy()
    out[..., 0] = (kps[..., 0] + 0.5) * rw / sw - 0.5 - x0
    out[..., 1] = (kps[..., 1] + 0.5) * rh / sh - 0.5 - y0
    out[kps[..., 2] <= 0] = 0
    return out, (rh, rw, y0, x0, rw / sw, rh / sh)


def test_conditions_equal_the_preprocessing_geometry(root: Path) -> None:
    cfg = data_cfg(root, frame_stride=2)
    selection = select_clips(cfg, holdout=0)
    example, *_ = item = next(iter(stream(cfg, selection, frames=3)))
    batch = collate([item])
    conditions = batch.conditions()
    assert conditions.flow is not None and conditions.order is not None
    assert conditions.pose is not None and conditions.reference_pose is not None
    (sample,) = iter_samples(root, keys=[example.key])
    geo = GeometryConfig()
    thr = geo.keypoint_threshold
    kw: dict[str, Any] = {
        "keypoint_threshold": thr,
        "limb_width": geo.limb_width,
        "dilation": geo.dilation,
        "min_keypoints": geo.min_keypoints,
    }
    assert example.frame_indices[1] - example.frame_indices[0] == 2
    for f, i in enumerate(example.frame_indices):
        kps, (rh, rw, y0, x0, sx, sy) = canvas_keypoints(sample.pose[i], sample.frames.shape[1:3])
        masks = dilation_masks(kps, SIZE, SIZE, **kw)  # (P, H, W) at the training resolution
        assert masks.any()
        flow = cv2.resize(sample.flow[i], (rw, rh), interpolation=cv2.INTER_LINEAR)
        flow = flow[y0 : y0 + SIZE[0], x0 : x0 + SIZE[1]] * np.array([sx, sy], np.float32)
        want_flow = flow_guider_input(flow, union_mask(masks), geo.flow_scale)
        # ranks among the characters on the canvas, in the order of the stored ranks
        shown = [p for p in np.flatnonzero(masks.any((1, 2))) if sample.ranks[i, p] >= 0]
        ranks = np.full(len(masks), -1)
        for rank, p in enumerate(sorted(shown, key=lambda p: (sample.ranks[i, p], p))):
            ranks[p] = rank
        want_order = depth_order_map(masks, ranks, geo.order_levels)
        want_pose = render_pose(kps, SIZE, SIZE, thr)
        np.testing.assert_allclose(
            conditions.flow[0, f].permute(1, 2, 0).numpy(), want_flow, atol=1e-5
        )
        np.testing.assert_array_equal(
            (conditions.order[0, f, 0] * 255).round().byte().numpy(), want_order
        )
        np.testing.assert_array_equal(
            (conditions.pose[0, f] * 255).round().byte().permute(1, 2, 0).numpy(), want_pose
        )
    ref_kps, _ = canvas_keypoints(sample.pose[example.reference_index], sample.frames.shape[1:3])
    want_ref = render_pose(ref_kps, SIZE, SIZE, thr)
    got_ref = (conditions.reference_pose[0, 0] * 255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got_ref, want_ref)
    assert batch.frames.shape == (1, 3, 3, *SIZE)
    assert batch.clip_pixels.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_and_inference_normalise_the_guider_inputs_alike(
    root: Path, dtype: torch.dtype
) -> None:
    """One normalisation: a training batch's conditions and inference's conditions of the same
    guider arrays are the same tensors, at the documented scale (maps / 255, flow as is)."""
    cfg = data_cfg(root)
    example, *_ = item = next(iter(stream(cfg, select_clips(cfg, holdout=0), frames=3)))
    trained = collate([item]).conditions(dtype=dtype).tensors()
    inferred = Conditions.from_arrays(example.guiders, dtype=dtype).tensors()
    g = example.guiders
    assert g.pose is not None and g.flow is not None and g.order is not None
    assert g.reference_pose is not None
    unit = np.float32(255)
    channels_first = {  # (1, F, C, H, W) float32, written out here
        "pose": np.moveaxis(g.pose, -1, 1)[None] / unit,
        "flow": np.moveaxis(g.flow, -1, 1)[None],
        "order": g.order[None, :, None] / unit,
        "reference_pose": np.moveaxis(g.reference_pose, -1, 0)[None, None] / unit,
    }
    assert g.pose.max() == 255 and g.order.max() == 255  # the scale is visible in the data
    for name in GUIDER_NAMES:
        a, b = trained[name], inferred[name]
        assert a.dtype == b.dtype == dtype and torch.equal(a, b), name
        want = torch.from_numpy(np.ascontiguousarray(channels_first[name])).to(dtype)
        torch.testing.assert_close(a, want, rtol=0, atol=0, msg=name)


def test_dataset_geometry_reads_a_versioned_output_only(root: Path, tmp_path: Path) -> None:
    assert dataset_geometry(str(root)) == GeometryConfig()
    config = yaml.safe_load((root / "config.yaml").read_text())
    assert config.pop("format_version") == FORMAT_VERSION
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(FormatVersionError, match="no format_version"):
        dataset_geometry(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"data\.root must be a preprocessing output"):
        dataset_geometry(str(tmp_path / "missing"))


def epoch_keys(ds: ClipStream) -> tuple[list[str], dict[str, int]]:
    """Keys of one whole epoch of a single-reader stream, and the skip counts."""
    keys: list[str] = []
    skipped: dict[str, int] = {}
    for example, _, (epoch, _), counts in ds:
        for k, v in counts.items():
            skipped[k] = skipped.get(k, 0) + v
        if epoch > 0:
            break
        keys.append(example.key)
    return keys, skipped


def test_where_selects_exactly_the_clips_the_stats_say(root: Path) -> None:
    where = "characters_max >= 2 and bg_flow_mean < 6"
    cfg = data_cfg(root, where=where)
    table = pads.dataset(str(root / "stats" / "clips"), format="parquet").to_table()
    mask = pc.and_(pc.greater_equal(table["characters_max"], 2), pc.less(table["bg_flow_mean"], 6))
    expected = set(table.filter(mask)["key"].to_pylist()) - set(BROKEN)
    assert 0 < len(expected) < table.num_rows - len(BROKEN)
    keys, _ = epoch_keys(stream(cfg, select_clips(cfg, holdout=0)))
    assert sorted(keys) == sorted(expected)


def test_bad_clips_are_skipped_and_counted(root: Path) -> None:
    cfg = data_cfg(root)
    keys, skipped = epoch_keys(stream(cfg, select_clips(cfg, holdout=0), frames=4))
    assert skipped == {"decode": 1, "short": 1}
    assert set(keys).isdisjoint(BROKEN)
    assert len(keys) == sum(map(len, VIDEOS)) - len(BROKEN)


def test_holdout_and_oversampling(root: Path) -> None:
    cfg = data_cfg(root, multi_character_repeat=2.0)
    selection = select_clips(cfg, holdout=1)
    keys, _ = epoch_keys(stream(cfg, selection))
    assert selection.holdout[0] not in keys
    multi = {k for k, r in selection.repeats.items() if r == 2.0}
    assert multi
    for key in set(keys):
        assert keys.count(key) == (2 if key in multi else 1)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_stream_continues_where_it_stopped(root: Path, workers: int) -> None:
    cfg = data_cfg(root, workers=workers)
    selection = select_clips(cfg, holdout=0)
    full = [b.keys for b in islice(make_loader(stream(cfg, selection), 2), 8)]
    positions: dict[int, tuple[int, int]] = {}
    consumed = 5
    for batch in islice(make_loader(stream(cfg, selection), 2), consumed):
        positions[batch.stream] = batch.position
    rotate = consumed % max(1, workers)
    resumed = make_loader(stream(cfg, selection, start=positions, rotate=rotate), 2)
    assert [b.keys for b in islice(resumed, 3)] == full[5:8]


@pytest.fixture
def s3_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``root`` uploaded to a real S3-protocol server (moto) on loopback."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="mcanim-train")
        for path in root.rglob("*"):
            if path.is_file() and ".staging" not in path.parts:
                client.upload_file(str(path), "mcanim-train", f"out/{path.relative_to(root)}")
        yield "s3://mcanim-train/out"
    finally:
        server.stop()


def test_s3_root_streams_the_same_clips(root: Path, s3_root: str) -> None:
    local = data_cfg(root, where="characters_max >= 2")
    remote = data_cfg(s3_root, where="characters_max >= 2")
    want, _ = epoch_keys(stream(local, select_clips(local, holdout=0)))
    got, _ = epoch_keys(stream(remote, select_clips(remote, holdout=0)))
    assert got == want and len(got) >= 2
