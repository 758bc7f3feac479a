"""Every forward pass of the feature networks (model/metrics/lpips.py, inception.py,
resnet3d.py, i3d.py and their callers in suite.py) on real frames, against an independent
implementation or a hand computation.

| metric | tested against |
|---|---|
| LPIPS | the ``lpips`` package (richzhang/PerceptualSimilarity) with its published v0.1 heads, same random trunk; the trunk's feature-map sizes against AlexNet's known ones |
| FID | torch-fidelity's own FID Inception (same random weights, BatchNorm calibrated on real frames); the resize and [-1, 1] scaling against OpenCV's bilinear resize by hand |
| FID-VID | MONAI's 3D ResNet (Hara et al.'s architecture) on a clip preprocessed by hand (OpenCV resize, 0-255 minus the Kinetics mean) |
| FVD | the I3D call convention: the recorded input and flags against the frames by hand |

The references are imported as tests/model/reference_metrics.py explains (no torchvision).
Random weights are no published numbers: these tests pin that our code computes what the
references compute, so the published files give the published metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from model.metrics.i3d import i3d_features
from model.metrics.inception import FIDInception, load_fid_inception
from model.metrics.lpips import LPIPS, load_lpips
from model.metrics.resnet3d import KINETICS_MEAN, ResNet3D, clip_input, load_resnet3d
from model.metrics.suite import image_features, lpips_frames, video_features
from shards.video import read_video
from tests.model.reference_metrics import (
    import_lpips,
    import_torch_fidelity_inception,
    lpips_head_file,
    monai_resnet50_3d,
)
from tests.model.test_frame_metric_parity import _crop, _distort, _short_side


@pytest.fixture(scope="module")
def video(vtest: Path) -> np.ndarray:
    """17 real frames of vtest.avi shrunk to a short side of 270, (17, 270, 360, 3) uint8."""
    return _short_side(read_video(vtest, 17)[0], 270)


@pytest.fixture(scope="module")
def frames(video: np.ndarray) -> np.ndarray:
    """Their centre crops, (17, 120, 152, 3) uint8."""
    return np.stack([_crop(f) for f in video])


def calibrate(net: nn.Module, x: torch.Tensor, seed: int = 0) -> None:
    """Give every BatchNorm the statistics of its input on ``x`` (one forward in training
    mode) and a random affine, so that every layer's output is O(1) and depends on every
    branch: random initial weights alone leave deep features dominated by BN offsets."""
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative: the running stats become this batch's
    net.train()
    with torch.no_grad():
        net(x)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.4 * torch.rand(m.bias.shape, generator=gen) - 0.2)
    net.eval()


# ---- LPIPS -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lpips_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[LPIPS, Any]:
    """(ours from files, the lpips package's) with one random trunk and the published heads."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    trunk = {k: v for k, v in LPIPS().state_dict().items() if k.startswith("features.")}
    torch.save(trunk, folder / "alexnet-owt-7be5be79.pth")
    shutil.copy(lpips_head_file(), folder / "alex.pth")
    ours = load_lpips(folder)
    lp = import_lpips()
    theirs = lp.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    slices = {i: k for k, idx in enumerate(((0, 1), (2, 3, 4), (5, 6, 7), (8, 9), (10, 11)))
              for i in idx}  # fmt: skip
    mapped = {f"net.slice{slices[int(k.split('.')[1])] + 1}.{k.split('.', 1)[1]}": v
              for k, v in trunk.items()}  # fmt: skip
    missing, unexpected = theirs.load_state_dict(mapped, strict=False)
    assert not unexpected and all(k.startswith(("lin", "scaling_layer")) for k in missing)
    heads = torch.load(lpips_head_file(), map_location="cpu")
    for k, v in heads.items():  # the package loaded its heads (strict=False there): check
        assert torch.equal(theirs.state_dict()[k], v) and torch.equal(ours.state_dict()[k], v)
    return ours, theirs.eval()


def test_lpips_matches_the_lpips_package_on_real_distortions(
    lpips_pair: tuple[LPIPS, Any], video: np.ndarray, frames: np.ndarray
) -> None:
    ours, theirs = lpips_pair
    rng = np.random.default_rng(0)
    kinds = ("noise", "blur", "shift", "jpeg", "next_frame")
    real = frames[: len(kinds)]  # (5, 120, 152, 3)
    gen = np.stack([_distort(k, video, t, rng) for t, k in enumerate(kinds)])
    got = lpips_frames(ours, gen, real)  # uint8 in, [-1, 1] inside
    with torch.no_grad():
        g, r = (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1 for a in (gen, real))
        expected = theirs(g, r).flatten().tolist()
    assert got == pytest.approx(expected, rel=1e-5)
    assert min(expected) > 1e-3  # real distances (a random trunk gives small ones), not zeros


def test_lpips_trunk_taps_have_alexnet_feature_map_sizes() -> None:
    """AlexNet on 224×224: relu1 64×55×55, relu2 192×27×27, relu3..5 384/256/256×13×13 (the
    well-known sizes; they pin the strides, paddings and pools the lpips test shares)."""
    net = LPIPS().eval()
    with torch.no_grad():
        taps = net.taps(torch.zeros(1, 3, 224, 224))
    sizes = [tuple(t.shape[1:]) for t in taps]
    assert sizes == [(64, 55, 55), (192, 27, 27), (384, 13, 13), (256, 13, 13), (256, 13, 13)]


# ---- FID Inception ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inception_pair(
    frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FIDInception, Any, np.ndarray]:
    """(ours from the file, torch-fidelity's from the same file, a 299×299 real frame)."""
    images = cv2.resize(frames[0], (299, 299), interpolation=cv2.INTER_AREA)[None]
    torch.manual_seed(0)
    net = FIDInception()
    calibrate(net, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    folder = tmp_path_factory.mktemp("inception")
    path = folder / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    fidelity = import_torch_fidelity_inception()
    # torch-fidelity loads the file strictly by name: its module tree is the same as ours.
    theirs = fidelity.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
    )
    return load_fid_inception(folder), theirs, images


def test_fid_inception_matches_torch_fidelity(
    inception_pair: tuple[FIDInception, Any, np.ndarray],
) -> None:
    ours, theirs, images = inception_pair
    u8 = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (1, 3, 299, 299)
    with torch.no_grad():
        (expected,) = theirs(u8)
        # torch-fidelity scales 0-255 by (x - 128) / 128, pytorch-fid (ours) by 2x - 1 of
        # x in [0, 1]: x = u / 256 gives both networks the same first-layer input.
        got = ours(u8.float() / 256)
    assert got.shape == expected.shape == (1, 2048)
    assert float(expected.std()) > 0.05  # features that depend on the input
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


class StopForward(Exception):
    """Raised by a hook once the tensor under test is recorded (skips the rest)."""


def first_layer_input(net: nn.Module, layer: nn.Module, run: Any) -> torch.Tensor:
    """The input ``layer`` sees when ``run()`` calls ``net`` (the forward stops there)."""
    seen: list[torch.Tensor] = []

    def hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0].detach().clone())
        raise StopForward

    handle = layer.register_forward_pre_hook(hook)
    try:
        with pytest.raises(StopForward):
            run()
    finally:
        handle.remove()
    return seen[0]


def test_fid_inception_input_is_a_bilinear_299_resize_scaled_to_minus_one_one(
    frames: np.ndarray,
) -> None:
    net = FIDInception().eval()
    images = frames[:2, :90, :140]  # not square: each axis scales on its own
    x = first_layer_input(net, net.Conv2d_1a_3x3, lambda: image_features(net, images))
    by_hand = np.stack([cv2.resize(f.astype(np.float32) / 255, (299, 299),
                                   interpolation=cv2.INTER_LINEAR) for f in images])  # fmt: skip
    expected = torch.from_numpy(2 * by_hand - 1).permute(0, 3, 1, 2)  # (2, 3, 299, 299)
    torch.testing.assert_close(x, expected, rtol=0, atol=3e-5)  # OpenCV rounds its weights


# ---- FID-VID 3D ResNet-50 -------------------------------------------------------------------
def clip_by_hand(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, 112, 112): OpenCV bilinear resize of [0, 1] values,
    times 255, minus the Kinetics mean (R, G, B)."""
    small = np.stack([cv2.resize(f.astype(np.float32) / 255, (112, 112),
                                 interpolation=cv2.INTER_LINEAR) for f in clip])  # fmt: skip
    x = small * 255 - np.array([114.7748, 107.7354, 99.4750], np.float32)  # (T, 112, 112, 3)
    return torch.from_numpy(x).permute(3, 0, 1, 2)[None]


def test_clip_input_is_resized_scaled_and_mean_subtracted(frames: np.ndarray) -> None:
    clip = frames[:4]
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()[None] / 255  # (1, T, 3, H, W)
    torch.testing.assert_close(clip_input(x), clip_by_hand(clip), rtol=0, atol=5e-3)  # 0-255
    assert KINETICS_MEAN == (114.7748, 107.7354, 99.4750)  # Hara et al.'s RGB order


def test_fid_vid_features_match_monai_on_a_hand_preprocessed_clip(
    frames: np.ndarray, tmp_path: Path
) -> None:
    clip = frames[:8]  # FID-VID uses 16 frames; the network takes any length (half the time)
    torch.manual_seed(0)
    net = ResNet3D()
    calibrate(net, clip_by_hand(clip))
    wrapped = {f"module.{k}": v for k, v in net.state_dict().items()}  # the published layout
    torch.save({"arch": "resnet-50", "state_dict": wrapped}, tmp_path / "resnet-50-kinetics.pth")
    ours = load_resnet3d(tmp_path)
    monai = monai_resnet50_3d()
    monai.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")})
    monai.eval()
    got = video_features("fid_vid", ours, [clip])  # (1, 2048) float64
    with torch.no_grad():
        expected = monai(clip_by_hand(clip)).double().numpy()
    assert got.shape == expected.shape == (1, 2048)
    assert float(expected.std()) > 0.05
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


# ---- FVD I3D call convention -----------------------------------------------------------------
class RecordingI3D(nn.Module):
    """Records what the I3D TorchScript would receive; returns (N, 400) zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # for the suite's device lookup
        self.calls: list[tuple[torch.Tensor, dict[str, bool]]] = []

    def forward(self, x: torch.Tensor, **flags: bool) -> torch.Tensor:
        self.calls.append((x.clone(), flags))
        return torch.zeros(x.shape[0], 400)


def test_i3d_gets_0_255_videos_channels_first_with_rescale_and_resize(frames: np.ndarray) -> None:
    net = RecordingI3D()
    clips = [frames[:16], frames[1:17]]
    assert video_features("fvd", net, clips).shape == (2, 400)
    for (x, flags), clip in zip(net.calls, clips, strict=True):
        assert flags == {"rescale": True, "resize": True, "return_features": True}
        by_hand = torch.from_numpy(clip.astype(np.float32)).permute(3, 0, 1, 2)[None]
        torch.testing.assert_close(x, by_hand, rtol=0, atol=1e-4)  # (1, 3, T, H, W), 0-255
    direct = torch.from_numpy(frames[:8]).permute(0, 3, 1, 2).float()[None] / 255
    i3d_features(net, direct)
    assert net.calls[-1][0].shape == (1, 3, 8, 120, 152)
