"""Depth Anything backend on a tiny random transformers model folder with the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from preprocess.config import DepthConfig
from preprocess.depth import create_depth_backend
from preprocess.depth.depth_anything import DepthAnythingDepth, normalise_per_frame, resolve_model
from preprocess.standins import write_depth_anything


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_depth_anything(tmp_path_factory.mktemp("da") / "depth-anything-small-hf")


def test_processor_semantics_and_map_output(folder: Path) -> None:
    b = create_depth_backend(DepthConfig(backend="depth_anything", model=str(folder), batch_size=2))
    assert isinstance(b, DepthAnythingDepth) and b.device == "cpu" and b.dtype == torch.float32
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 540, 720, 3), dtype=np.uint8)
    pixels = b.processor(images=list(frames[:1]), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 518, 686)  # short side 518, aspect kept, x14
    depth = b.clip_depth(frames, (135, 180))
    assert depth.shape == (3, 135, 180) and depth.dtype == np.float32
    np.testing.assert_allclose(depth.min((1, 2)), 0.0)
    np.testing.assert_allclose(depth.max((1, 2)), 1.0)
    # batching does not change results; the map is the model's own depth resized + normalised
    raw = b.predict(frames[2:3], (135, 180))
    np.testing.assert_allclose(depth[2], normalise_per_frame(raw)[0], atol=1e-5)
    single = create_depth_backend(DepthConfig(backend="depth_anything", model=str(folder)))
    np.testing.assert_allclose(single.clip_depth(frames[2:3], (135, 180))[0], depth[2], atol=1e-5)
    ident = b.identity()
    assert ident["model"] == str(folder) and len(str(ident["weights_sha256"])) == 64


def test_normalise_per_frame() -> None:
    d = np.stack([np.arange(12.0).reshape(3, 4), np.full((3, 4), 7.0)])
    out = normalise_per_frame(d)
    np.testing.assert_allclose(out[0], np.arange(12.0).reshape(3, 4) / 11)
    assert (out[1] == 0).all()


def test_missing_folder_and_uncached_hub_id_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match=r"depth\.model.*weights fetch depth_anything"):
        create_depth_backend(DepthConfig(backend="depth_anything", model=str(tmp_path / "none")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match=r"hub id 'someone/no-such-model'.*depth\.model"):
        create_depth_backend(DepthConfig(backend="depth_anything", model="someone/no-such-model"))


def test_default_model_is_the_fetched_folder_else_the_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCANIM_WEIGHTS", str(tmp_path))
    assert resolve_model("") == ("LiheYoung/depth-anything-small-hf", False)
    fetched = tmp_path / "depth_anything" / "depth-anything-small-hf"
    fetched.mkdir(parents=True)
    assert resolve_model("") == (str(fetched), True)
