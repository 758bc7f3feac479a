"""Depth Anything (``depth.backend=depth_anything``) against transformers' own
``pipeline("depth-estimation")``, and known answers for what the pipeline cannot show.

Both run the same tiny random model folder (:func:`preprocess.standins.write_depth_anything`,
processor target 140 instead of 518 to keep the tests fast; the 518 semantics are in
test_depth_anything.py) on real frames of vtest.avi and dance_single.mp4:

- pre-processing parity: the pipeline is given PIL images of the RGB frames; the model must
  receive the same ``pixel_values`` from our backend, and return the same raw depth;
- post-processing parity: the pipeline resizes the raw depth to the frame (bicubic) and
  min-max normalises it for its ``depth`` image; we resize to the map (bilinear, antialiased)
  and min-max normalise per frame: the same maps up to the interpolation kernel;
- our map is an increasing function of the model's raw ``predicted_depth`` whatever the
  weights (random weights, and the same with the depth head's sign flipped): the code never
  inverts what the model says;
- channel order: with the patch embedding reading one RGB channel only, frames that differ
  only in the other channels must give identical maps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import pipeline

from preprocess.config import DepthConfig
from preprocess.depth import create_depth_backend
from preprocess.depth.depth_anything import DepthAnythingDepth
from preprocess.standins import write_depth_anything
from tests.media import read_frames

SIDE = 140


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_depth_anything(tmp_path_factory.mktemp("da_parity") / "da", input_side=SIDE)


@pytest.fixture(scope="module")
def clips(vtest: Path, dance: Path) -> dict[str, np.ndarray]:
    """Real RGB frames of a landscape (2) and a portrait (1) video."""
    return {"vtest": read_frames(vtest, 2), "dance": read_frames(dance, 1)}


def backend(folder: Path, **kw: Any) -> DepthAnythingDepth:
    b = create_depth_backend(DepthConfig(backend="depth_anything", model=str(folder), **kw))
    assert isinstance(b, DepthAnythingDepth) and b.device == "cpu"
    return b


@contextmanager
def capture(model: torch.nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Every forward of ``model``: its ``pixel_values`` and raw ``predicted_depth``."""
    seen: dict[str, list[torch.Tensor]] = {"pixels": [], "depth": []}

    def hook(_: torch.nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        seen["pixels"].append(kwargs["pixel_values"] if "pixel_values" in kwargs else args[0])
        seen["depth"].append(out.predicted_depth.detach())

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def minmax(d: np.ndarray) -> np.ndarray:
    return (d - d.min()) / (d.max() - d.min())


def test_pre_and_post_processing_match_the_pipeline(
    folder: Path, clips: dict[str, np.ndarray]
) -> None:
    pipe = pipeline("depth-estimation", model=str(folder), device="cpu")
    ours = backend(folder, batch_size=2)
    for name, clip in clips.items():
        h, w = clip.shape[1:3]
        with capture(pipe.model) as theirs:
            results = pipe([Image.fromarray(f) for f in clip])
        with capture(ours.net) as mine:
            full = ours.clip_depth(clip, (h, w))  # (2, H, W) at the frame size
        pixels = torch.cat(theirs["pixels"])  # the pipeline runs one image per call
        assert pixels.shape[-2:] != (h, w) and min(pixels.shape[-2:]) >= SIDE - 13, name
        torch.testing.assert_close(torch.cat(mine["pixels"]), pixels, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.cat(mine["depth"]), torch.cat(theirs["depth"]))
        maps = ours.clip_depth(clip, (h // 4, w // 4))  # (2, H/4, W/4), the map size
        for t, result in enumerate(results):
            bicubic = result["predicted_depth"].numpy()  # (H, W) raw depth at the frame size
            image = np.asarray(result["depth"], np.float32) / 255  # its min-max uint8 image
            assert np.corrcoef(full[t].ravel(), bicubic.ravel())[0, 1] > 0.999, name
            assert np.abs(full[t] - minmax(bicubic)).mean() < 0.02, name
            assert np.abs(full[t] - image).mean() < 0.02, name
            area = F.interpolate(
                torch.from_numpy(bicubic)[None, None], size=maps.shape[1:], mode="area"
            )
            assert np.abs(maps[t] - minmax(area[0, 0].numpy())).mean() < 0.02, name


def randomise(net: Any, seed: int, sign: float) -> None:
    """New random weights (fan-in scaled, as the stand-in); ``sign`` -1 flips the depth head."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
                m.weight.copy_(
                    torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5
                )
        head = net.head
        head.conv3.weight.mul_(sign)
        if sign < 0:  # the opposite opinion everywhere: no final ReLU, negative depths
            head.activation2 = torch.nn.Identity()


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_map_increases_with_the_models_predicted_depth(
    folder: Path, clips: dict[str, np.ndarray], seed: int, sign: float
) -> None:
    b = backend(folder)
    randomise(b.net, seed, sign)
    clip = clips["dance"][:1]
    raw_hw = b.processor(images=list(clip), return_tensors="pt")["pixel_values"].shape[-2:]
    with capture(b.net) as seen:
        out = b.clip_depth(clip, tuple(raw_hw))[0].ravel()  # the model's output size: no resize
    assert seen["depth"][0].shape[-2:] == raw_hw
    raw = seen["depth"][0][0].numpy().ravel()
    assert np.ptp(raw) > 0 and (raw > raw.min()).mean() > 0.3  # a real spread, few ties
    order = np.argsort(raw, kind="stable")
    assert (np.diff(out[order]) >= -1e-6).all()  # never inverted
    assert out[order[0]] == 0.0 and out[order[-1]] == pytest.approx(1.0)


@pytest.mark.parametrize("channel", [0, 2])
def test_the_model_is_given_rgb(folder: Path, clips: dict[str, np.ndarray], channel: int) -> None:
    """Patch embedding reading RGB channel ``channel`` only: changing the other two channels
    of a frame leaves the map unchanged; changing that one does not."""
    b = backend(folder)
    others = [c for c in range(3) if c != channel]
    with torch.no_grad():
        b.net.backbone.embeddings.patch_embeddings.projection.weight[:, others] = 0.0
    frame = clips["vtest"][0]
    rng = np.random.default_rng(channel)
    other = frame.copy()
    other[..., others] = rng.integers(0, 256, (*frame.shape[:2], 2), dtype=np.uint8)
    changed = frame.copy()
    changed[..., channel] = 255 - frame[..., channel]
    same, repainted, moved = b.clip_depth(np.stack([frame, other, changed]), (36, 48))
    np.testing.assert_allclose(repainted, same, atol=1e-5)
    assert np.abs(moved - same).max() > 0.05
