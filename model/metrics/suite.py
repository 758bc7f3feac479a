"""All the paper's metrics over a set of (generated, real) clips already brought to the
unified standard: per-frame L1/PSNR/SSIM/LPIPS averaged over every frame, FID over the two
sets of frames, FID-VID and FVD over the two sets of 16-frame segments.

The feature networks come from their published files (:func:`FeatureNets.load`); a network
whose file is missing is skipped with the loader's message recorded as the reason, unless
``stand_in=True`` builds the same trees with seeded random weights, for plumbing checks
only: every such number is labelled ``stand-in`` in the results and is not a metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.metrics.frame import frame_scores
from model.metrics.frechet import feature_distance
from model.metrics.i3d import i3d_features, load_i3d
from model.metrics.inception import FIDInception, load_fid_inception
from model.metrics.lpips import LPIPS, load_lpips
from model.metrics.resnet3d import ResNet3D, clip_input, load_resnet3d
from model.metrics.standard import Standard, segments

log = logging.getLogger(__name__)

FEATURE_METRICS = ("lpips", "fid", "fid_vid", "fvd")
ALL_METRICS = ("l1", "psnr", "ssim", *FEATURE_METRICS)


class StandInI3D(nn.Module):
    """A tiny network with the I3D TorchScript's call convention (plumbing only)."""

    def __init__(self, features: int = 400) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, features)

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = True,
    ) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            t = x.shape[2]
            x = nn.functional.interpolate(x, size=(t, 32, 32), mode="trilinear")
        y = nn.functional.adaptive_avg_pool3d(torch.relu(self.conv(x)), 1).flatten(1)
        return self.fc(y)


@dataclass
class FeatureNets:
    """The loaded feature networks (None: skipped, with the reason in ``skipped``)."""

    lpips: nn.Module | None = None
    fid: nn.Module | None = None
    fid_vid: nn.Module | None = None
    fvd: nn.Module | None = None
    stand_in: bool = False
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        wanted: Sequence[str],
        folder: str | Path | None = None,
        stand_in: bool = False,
        device: str | torch.device = "cpu",
    ) -> FeatureNets:
        if stand_in:
            log.warning("STAND-IN feature networks (random weights): LPIPS/FID/FVD not metrics")
            torch.manual_seed(0)
            makers: dict[str, Callable[[], nn.Module]] = {
                "lpips": _stand_in_lpips,
                "fid": FIDInception,
                "fid_vid": ResNet3D,
                "fvd": lambda: torch.jit.script(StandInI3D()),
            }
        else:
            makers = {
                "lpips": lambda: load_lpips(folder),
                "fid": lambda: load_fid_inception(folder),
                "fid_vid": lambda: load_resnet3d(folder),
                "fvd": lambda: load_i3d(folder),
            }
        nets = cls(stand_in=stand_in)
        for name in FEATURE_METRICS:
            if name not in wanted:
                continue
            try:
                setattr(nets, name, makers[name]().to(device).eval())
            except FileNotFoundError as exc:
                nets.skipped[name] = str(exc)
                log.warning("%s skipped: %s", name, exc)
        return nets


def _stand_in_lpips() -> nn.Module:
    """Random LPIPS whose heads are non-negative, as the published heads are (they were trained
    with their weights clamped at zero), so even a stand-in distance is never negative."""
    net = LPIPS()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("lin"):
                p.abs_()
    return net


def _tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [0, 1]."""
    return (
        torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255
    )


def _device(net: nn.Module) -> torch.device:
    p = next(iter(net.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def lpips_frames(
    net: nn.Module, generated: np.ndarray, real: np.ndarray, batch: int = 8
) -> list[float]:
    dev, out = _device(net), []
    for i in range(0, len(generated), batch):
        g = _tensor(generated[i : i + batch], dev) * 2 - 1
        r = _tensor(real[i : i + batch], dev) * 2 - 1
        out += net(g, r).tolist()
    return out


@torch.no_grad()
def image_features(net: nn.Module, frames: np.ndarray, batch: int = 8) -> np.ndarray:
    dev = _device(net)
    parts = [
        net(_tensor(frames[i : i + batch], dev)).cpu().double().numpy()
        for i in range(0, len(frames), batch)
    ]
    return np.concatenate(parts)


@torch.no_grad()
def video_features(name: str, net: nn.Module, clips: list[np.ndarray]) -> np.ndarray:
    dev = _device(net)
    feats = []
    for clip in clips:
        x = _tensor(clip, dev)[None]  # (1, T, 3, H, W)
        y = net(clip_input(x)) if name == "fid_vid" else i3d_features(net, x)
        feats.append(y.cpu().double().numpy())
    return np.concatenate(feats)


def score_clips(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    nets: FeatureNets,
    standard: Standard,
    real_features: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, object]]:
    """(per-clip frame metrics, dataset metrics) of (generated, real) unified clips.

    ``real_features`` caches the real side's features by metric name across calls that score
    variants against the same real clips (the ablations)."""
    cache = {} if real_features is None else real_features
    per_clip: dict[str, dict[str, float]] = {}
    frame_values: dict[str, list[float]] = {}
    for i, (gen, real) in enumerate(pairs):
        scores = frame_scores(gen, real)
        if nets.lpips is not None:
            scores["lpips"] = lpips_frames(nets.lpips, gen, real)
        per_clip[str(i)] = {k: float(np.mean(v)) for k, v in scores.items()}
        for k, v in scores.items():
            frame_values.setdefault(k, []).extend(v)
    dataset: dict[str, object] = {k: float(np.mean(v)) for k, v in frame_values.items()}
    dataset["frames"] = sum(len(g) for g, _ in pairs)
    skipped = dict(nets.skipped)
    if nets.fid is not None:
        gen_all = np.concatenate([g for g, _ in pairs])
        real_all = np.concatenate([r for _, r in pairs])
        if len(gen_all) < 2:
            skipped["fid"] = "FID needs at least 2 frames"
        else:
            if "fid" not in cache:
                cache["fid"] = image_features(nets.fid, real_all)
            dataset["fid"] = feature_distance(image_features(nets.fid, gen_all), cache["fid"])
    gen_segs = [s for g, _ in pairs for s in segments(g, standard.clip_len)]
    real_segs = [s for _, r in pairs for s in segments(r, standard.clip_len)]
    dataset["segments"] = len(gen_segs)
    dataset["frames_outside_segments"] = int(dataset["frames"]) - len(gen_segs) * standard.clip_len  # type: ignore[call-overload]
    for name in ("fid_vid", "fvd"):
        net = getattr(nets, name)
        if net is None:
            continue
        if len(gen_segs) < 2:
            skipped[name] = (
                f"needs at least 2 segments of {standard.clip_len} frames, got {len(gen_segs)}"
            )
            continue
        if name not in cache:
            cache[name] = video_features(name, net, real_segs)
        dataset[name] = feature_distance(video_features(name, net, gen_segs), cache[name])
    dataset["skipped"] = skipped
    dataset["stand_in"] = nets.stand_in
    return per_clip, dataset
