"""Metrics: known answers, the unified standard, Fréchet distance, and the feature networks'
module trees against the published files' key names and shapes. The numbers against
independent implementations on real frames: test_frame_metric_parity.py (L1/PSNR/SSIM vs
scikit-image) and test_feature_net_parity.py (LPIPS, FID, FID-VID, FVD networks)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model.metrics.frame import PSNR_CAP, SSIM_K1, frame_scores, l1, psnr, ssim
from model.metrics.frechet import Gaussian, feature_distance, frechet_distance
from model.metrics.i3d import i3d_features, load_i3d
from model.metrics.inception import FIDInception, load_fid_inception
from model.metrics.lpips import LPIPS, load_lpips
from model.metrics.resnet3d import ResNet3D, load_resnet3d
from model.metrics.standard import Standard, segments, unify
from model.metrics.suite import FeatureNets, StandInI3D, lpips_frames, score_clips


def video(t: int = 3, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (t, h, w, 3), dtype=np.uint8)


# ---- frame metrics: known answers ----------------------------------------------------------
def test_identical_videos() -> None:
    v = video()
    assert l1(v, v).tolist() == [0.0] * 3
    assert psnr(v, v).tolist() == [PSNR_CAP] * 3
    assert torch.allclose(ssim(v, v), torch.ones(3, dtype=torch.float64))


def test_shift_and_noise_give_the_closed_form_psnr() -> None:
    v = video()
    shifted = v + np.uint8(7)  # values 20..235: no wrap
    assert psnr(shifted, v).tolist() == pytest.approx([10 * math.log10(255**2 / 49)] * 3)
    assert l1(shifted, v).tolist() == pytest.approx([7 / 255] * 3)
    signs = np.where(np.random.default_rng(1).random(v.shape) < 0.5, -3, 3)  # ±3 noise: MSE 9
    noisy = (v.astype(int) + signs).astype(np.uint8)
    # MSE 9 on the 0-255 scale: 10 log10(255² / 9) = 38.588 dB, worked out by hand
    assert psnr(noisy, v).tolist() == pytest.approx([38.588] * 3, abs=1e-3)


def test_ssim_of_flat_frames_is_the_luminance_term() -> None:
    a = np.full((1, 16, 16, 3), 100, np.uint8)
    b = np.full((1, 16, 16, 3), 150, np.uint8)
    ma, mb, c1 = 100 / 255, 150 / 255, SSIM_K1**2
    assert ssim(a, b).item() == pytest.approx((2 * ma * mb + c1) / (ma**2 + mb**2 + c1))
    noisy = video(1, 16, 16)
    assert ssim(noisy, a).item() < ssim(noisy, noisy).item()


def test_bad_frames_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        l1(video(2), video(3))
    with pytest.raises(ValueError, match="uint8"):
        psnr(video().astype(np.float32), video().astype(np.float32))
    assert set(frame_scores(video(), video(seed=2))) == {"l1", "psnr", "ssim"}


# ---- the unified standard ------------------------------------------------------------------
def test_unified_crop_and_resize_put_a_planted_block_where_computed() -> None:
    frame = np.zeros((1, 600, 800, 3), np.uint8)
    frame[0, 150:450, 400:580] = 255  # block in source pixels (y, x)
    out = unify(frame, Standard(size=512))
    assert out.shape == (1, 512, 512, 3)
    # centre square: x 100..700, so the block is x 300..480, y 150..450 of a 600 square;
    # times 512/600: x 256..409.6, y 128..384.
    s = 512 / 600
    mask = out[0, ..., 0] > 127
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max() + 1) == (round(150 * s), round(450 * s))
    assert abs(xs.min() - 300 * s) <= 1 and abs(xs.max() + 1 - 480 * s) <= 1
    portrait = np.zeros((1, 80, 40, 3), np.uint8)
    portrait[0, 20:60] = 200  # the centre square is rows 20..60: all of it bright
    assert (unify(portrait, Standard(size=40)) == 200).all()


def test_segments_are_consecutive_and_drop_the_tail() -> None:
    frames = np.arange(37)
    segs = segments(frames, 16)
    assert [s.tolist() for s in segs] == [list(range(16)), list(range(16, 32))]


# ---- Fréchet distance ----------------------------------------------------------------------
def test_frechet_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    feats = np.random.default_rng(0).normal(size=(200, 8))
    assert feature_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    delta = np.array([0.5, -1.0, 0, 0, 0, 0, 0, 2.0])
    distances = [feature_distance(feats + k * delta, feats) for k in (0.5, 1, 2)]
    assert distances == pytest.approx([k * k * delta @ delta for k in (0.5, 1, 2)], rel=1e-6)
    scaled = Gaussian(np.zeros(2), np.eye(2) * 4, 10)
    assert frechet_distance(scaled, Gaussian(np.zeros(2), np.eye(2), 10)) == pytest.approx(2.0)


# ---- feature networks: published key names and shapes ---------------------------------------
# torchvision AlexNet ``features`` (conv indices 0, 3, 6, 8, 10) and LPIPS v0.1 alex.pth heads.
ALEX = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}  # fmt: skip
LPIPS_KEYS = {
    **{f"features.{i}.weight": s for i, s in ALEX.items()},
    **{f"features.{i}.bias": (s[0],) for i, s in ALEX.items()},
    **{f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))},
}


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if "num_batches" not in k}


def test_lpips_tree_matches_the_published_files() -> None:
    assert shapes(LPIPS()) == LPIPS_KEYS


def _inception_expected() -> dict[str, tuple[int, ...]]:
    """pytorch-fid's FID Inception (torchvision Inception3 names, no AuxLogits, fc 1008)."""
    convs: dict[str, tuple[int, int, int, int]] = {
        "Conv2d_1a_3x3": (32, 3, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3),
        "Conv2d_2b_3x3": (64, 32, 3, 3), "Conv2d_3b_1x1": (80, 64, 1, 1),
        "Conv2d_4a_3x3": (192, 80, 3, 3),
    }  # fmt: skip
    for name, cin, pool in (("5b", 192, 32), ("5c", 256, 64), ("5d", 288, 64)):
        convs |= {f"Mixed_{name}.{k}": v for k, v in {
            "branch1x1": (64, cin, 1, 1), "branch5x5_1": (48, cin, 1, 1),
            "branch5x5_2": (64, 48, 5, 5), "branch3x3dbl_1": (64, cin, 1, 1),
            "branch3x3dbl_2": (96, 64, 3, 3), "branch3x3dbl_3": (96, 96, 3, 3),
            "branch_pool": (pool, cin, 1, 1)}.items()}  # fmt: skip
    convs |= {f"Mixed_6a.{k}": v for k, v in {
        "branch3x3": (384, 288, 3, 3), "branch3x3dbl_1": (64, 288, 1, 1),
        "branch3x3dbl_2": (96, 64, 3, 3), "branch3x3dbl_3": (96, 96, 3, 3)}.items()}  # fmt: skip
    for name, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
        convs |= {f"Mixed_{name}.{k}": v for k, v in {
            "branch1x1": (192, 768, 1, 1), "branch7x7_1": (c7, 768, 1, 1),
            "branch7x7_2": (c7, c7, 1, 7), "branch7x7_3": (192, c7, 7, 1),
            "branch7x7dbl_1": (c7, 768, 1, 1), "branch7x7dbl_2": (c7, c7, 7, 1),
            "branch7x7dbl_3": (c7, c7, 1, 7), "branch7x7dbl_4": (c7, c7, 7, 1),
            "branch7x7dbl_5": (192, c7, 1, 7), "branch_pool": (192, 768, 1, 1)}.items()}  # fmt: skip
    convs |= {f"Mixed_7a.{k}": v for k, v in {
        "branch3x3_1": (192, 768, 1, 1), "branch3x3_2": (320, 192, 3, 3),
        "branch7x7x3_1": (192, 768, 1, 1), "branch7x7x3_2": (192, 192, 1, 7),
        "branch7x7x3_3": (192, 192, 7, 1), "branch7x7x3_4": (192, 192, 3, 3)}.items()}  # fmt: skip
    for name, cin in (("7b", 1280), ("7c", 2048)):
        convs |= {f"Mixed_{name}.{k}": v for k, v in {
            "branch1x1": (320, cin, 1, 1), "branch3x3_1": (384, cin, 1, 1),
            "branch3x3_2a": (384, 384, 1, 3), "branch3x3_2b": (384, 384, 3, 1),
            "branch3x3dbl_1": (448, cin, 1, 1), "branch3x3dbl_2": (384, 448, 3, 3),
            "branch3x3dbl_3a": (384, 384, 1, 3), "branch3x3dbl_3b": (384, 384, 3, 1),
            "branch_pool": (192, cin, 1, 1)}.items()}  # fmt: skip
    out: dict[str, tuple[int, ...]] = {"fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for prefix, shape in convs.items():
        out[f"{prefix}.conv.weight"] = shape
        for stat in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.bn.{stat}"] = (shape[0],)
    return out


def test_fid_inception_tree_matches_pytorch_fid() -> None:
    net = FIDInception()
    assert shapes(net) == _inception_expected()
    # torchvision's inception_v3(aux_logits=False) has 23,834,568 parameters with 1000 classes
    assert sum(p.numel() for p in net.parameters()) == 23_834_568 + 8 * 2048 + 8


def test_resnet3d_tree_matches_3d_resnets_pytorch() -> None:
    expected: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7, 7)}
    expected |= {f"bn1.{s}": (64,) for s in ("weight", "bias", "running_mean", "running_var")}
    cin = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            convs = {"conv1": (planes, cin, 1, 1, 1), "conv2": (planes, planes, 3, 3, 3),
                     "conv3": (4 * planes, planes, 1, 1, 1)}  # fmt: skip
            if b == 0:
                convs["downsample.0"] = (4 * planes, cin, 1, 1, 1)
            for name, shape in convs.items():
                expected[f"{p}.{name}.weight"] = shape
                bn = name.replace("conv", "bn") if name != "downsample.0" else "downsample.1"
                expected |= {f"{p}.{bn}.{s}": (shape[0],) for s in ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
            cin = 4 * planes
    expected |= {"fc.weight": (400, 2048), "fc.bias": (400,)}
    assert shapes(ResNet3D()) == expected


# ---- loading the published files ------------------------------------------------------------
def test_loaders_read_published_layouts_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lp = LPIPS()
    state = lp.state_dict()
    trunk = {k: v for k, v in state.items() if k.startswith("features.")}
    trunk["classifier.1.weight"] = torch.zeros(4096, 9216)[:2]  # the rest of torchvision's file
    torch.save(trunk, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "alex.pth")
    loaded = load_lpips(tmp_path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())

    r3 = ResNet3D()
    wrapped = {f"module.{k}": v for k, v in r3.state_dict().items()}  # 3D-ResNets' checkpoint
    torch.save({"epoch": 200, "arch": "resnet-50", "state_dict": wrapped}, tmp_path / "resnet-50-kinetics.pth")  # fmt: skip
    assert torch.equal(load_resnet3d(tmp_path).conv1.weight, r3.conv1.weight)

    inc = FIDInception().state_dict()
    inc["fc.weigth"] = inc.pop("fc.weight")  # a renamed key is an error naming it
    torch.save(inc, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(ValueError, match=r"fc\.weigth"):
        load_fid_inception(tmp_path)

    torch.jit.script(StandInI3D()).save(str(tmp_path / "i3d_torchscript.pt"))
    clips = torch.rand(2, 8, 3, 40, 40)
    assert i3d_features(load_i3d(tmp_path), clips).shape == (2, 400)


def test_missing_weights_name_the_file_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pt_inception-2015-12-05-6726825d\.pth.*github"):
        load_fid_inception(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"i3d_torchscript\.pt.*dropbox"):
        load_i3d(tmp_path)
    nets = FeatureNets.load(["lpips", "fvd"], tmp_path)
    assert nets.lpips is None and set(nets.skipped) == {"lpips", "fvd"}


# ---- LPIPS and the whole suite with stand-in networks ----------------------------------------
def test_lpips_is_zero_for_equal_images_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    net = LPIPS().eval()
    for k in range(5):  # planted non-negative heads, as the published ones are
        nn.init.uniform_(getattr(net, f"lin{k}").model[1].weight, 0.0, 1.0)
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(net(a, a), torch.zeros(2))
    d = net(a, b)
    assert (d > 0).all() and torch.allclose(d, net(b, a))


class TinyImageNet(nn.Module):
    """Stand-in for the FID Inception: (N, 3, H, W) -> (N, 4)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.std((1, 2, 3))[:, None]], 1)


def test_score_clips_with_stand_in_networks() -> None:
    std = Standard(size=32, clip_len=4)
    real = [unify(video(8, 32, 40, seed=s), std) for s in range(3)]
    same = score_clips([(r, r) for r in real], FeatureNets(fid=TinyImageNet()), std)[1]
    assert same["psnr"] == PSNR_CAP and same["fid"] == pytest.approx(0.0, abs=1e-6)
    darker = [(r // 2, r) for r in real]
    nets = FeatureNets(
        lpips=LPIPS().eval(), fid=TinyImageNet(), fvd=torch.jit.script(StandInI3D()).eval()
    )
    per_clip, data = score_clips(darker, nets, std)
    assert data["fid"] > 1e-3 and data["fvd"] > 0 and data["segments"] == 6
    assert data["frames"] == 24 and data["frames_outside_segments"] == 0
    assert set(per_clip["0"]) == {"l1", "psnr", "ssim", "lpips"}
    short = score_clips([(real[0][:3], real[0][:3])], FeatureNets(fvd=StandInI3D()), std)[1]
    assert "fvd" not in short and "segments" in short["skipped"]["fvd"]


def test_stand_in_networks_give_a_non_negative_lpips() -> None:
    nets = FeatureNets.load(["lpips"], stand_in=True)
    assert nets.lpips is not None and nets.stand_in
    a, b = video(2, 64, 64, seed=1), video(2, 64, 64, seed=2)
    assert lpips_frames(nets.lpips, a, a) == [0.0, 0.0]
    assert min(lpips_frames(nets.lpips, a, b)) > 0
