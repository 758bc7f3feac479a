"""The loader builds only the inputs of the model's guiders (``stage.guiders``: a guider left
out is not fed), and clips without any character still make training examples (why the paper
presets keep them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import train.loader
from model.components import build_image_processor
from model.config import preset_config
from preprocess.geometry import GeometryConfig
from shards.schema import Sample
from tests.train.helpers import write_train_output
from train.config import DataConfig
from train.examples import build_example
from train.loader import ClipStream, collate, select_clips

SIZE = (64, 48)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guider_inputs")
    write_train_output(out, [[1, 2], [2]])
    return out


def first_batch(root: Path, names: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list]:
    """The first batch of a stream for a model with guiders ``names``, and the fields each
    clip was decoded with."""
    decoded: list[Any] = []
    decode = train.loader.decode_sample

    def spy(raw: Any, fields: Any = None) -> Any:
        decoded.append(None if fields is None else sorted(fields))
        return decode(raw, fields)

    monkeypatch.setattr(train.loader, "decode_sample", spy)
    cfg = DataConfig(root=str(root), height=SIZE[0], width=SIZE[1], workers=0, shuffle_buffer=0)
    model_cfg = preset_config("tiny")
    model_cfg.guiders.names = names
    stream = ClipStream(cfg, select_clips(cfg, 0), 2, GeometryConfig(), model_cfg)
    return collate([next(iter(stream))]), decoded


def test_a_model_without_the_order_guider_gets_no_order_input(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, _ = first_batch(root, ["pose", "flow", "reference_pose"], monkeypatch)
    assert batch.order is None and batch.flow is not None and batch.pose is not None
    conditions = batch.conditions()
    assert conditions.order is None and set(conditions.tensors()) == {
        "pose",
        "flow",
        "reference_pose",
    }


def test_a_model_without_the_flow_guider_never_decodes_flow(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, decoded = first_batch(root, ["pose", "order", "reference_pose"], monkeypatch)
    assert batch.flow is None and batch.order is not None
    assert decoded and all(f is not None and "flow.npz" not in f for f in decoded)
    # the stored masks, order maps and depth are redrawn or unused: never decoded either
    assert all(not {"mask.npz", "order.npz", "depth.npz"} & set(f) for f in decoded)
    full, decoded = first_batch(root, ["pose", "flow", "order", "reference_pose"], monkeypatch)
    assert all("flow.npz" in f for f in decoded) and full.flow is not None


def test_clips_without_characters_make_training_examples() -> None:
    """No track at all, or tracks never present: empty pose and order maps, and the flow input
    is the background flow / s everywhere. Such clips can be trained on, so the paper presets
    (unfiltered) keep them; the curated presets drop them by choice."""
    processor = build_image_processor(preset_config("tiny"))
    geo = GeometryConfig()
    for tracks in (0, 2):
        t, h, w = 4, 48, 64
        pose = np.zeros((t, tracks, 133, 3), np.float32)
        if tracks:
            pose[:, :, :2, :] = [10.0, 10.0, 0.9]  # two confident points: not present (< 3)
        sample = Sample(
            key=f"empty{tracks}",
            frames=np.zeros((t, h, w, 3), np.uint8),
            fps=25.0,
            pose=pose,
            flow=np.full((t, h // 4, w // 4, 2), 2.0, np.float32),
            mask=np.zeros((t, h // 4, w // 4), bool),
            order=np.zeros((t, h // 4, w // 4), np.uint8),
            ranks=np.full((t, tracks), -1, np.int8),
        )
        example = build_example(sample, 0, [1, 2], SIZE, geo, processor)
        g = example.guiders
        assert g.pose is not None and g.order is not None and g.flow is not None
        assert not g.pose.any() and not g.order.any()
        # 2 stored px/frame; the stored 48x64 frame is resized to 64x85 to cover the canvas
        scaled = np.array([2.0 * 85 / 64, 2.0 * 64 / 48]) / geo.flow_scale
        np.testing.assert_allclose(g.flow, np.broadcast_to(scaled, g.flow.shape), rtol=1e-5)


def test_a_stream_whose_clips_all_fail_stops_with_an_error(root: Path) -> None:
    """Every clip too short for the window: the stream says so instead of looping forever."""
    cfg = DataConfig(root=str(root), height=SIZE[0], width=SIZE[1], workers=0, shuffle_buffer=0)
    stream = ClipStream(cfg, select_clips(cfg, 0), 20, GeometryConfig(), preset_config("tiny"))
    with pytest.raises(RuntimeError, match=r"all 3 clips of epoch 0 were skipped \({'short': 3}\)"):
        next(iter(stream))
