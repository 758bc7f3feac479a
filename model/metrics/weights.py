"""Where the feature networks' published weight files come from and where they are looked for.

Every file is looked for as ``$MCANIM_WEIGHTS/metrics/NAME`` (default
``~/.cache/mcanim/weights/metrics/NAME``), or in ``--weights DIR`` of ``python -m
train.evaluate``. They are downloaded by hand from the URLs below (``preprocess.weights``
manages the extractors' files only: its ``fetch`` runs in ``make demo-paper``, and one of
these files sits in a Google Drive folder with no direct URL). The cache folder, safe reading
and strict loading are the shared ones of :mod:`preprocess.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from preprocess.state_dict import load_strict, read_state_dict
from preprocess.weights import cache_dir

__all__ = ["FILES", "Published", "load_state", "load_strict", "metrics_cache", "weight_path"]


@dataclass(frozen=True)
class Published:
    """One published weight file."""

    name: str
    url: str
    used_by: str


FILES = {
    f.name: f
    for f in (
        Published(
            "alexnet-owt-7be5be79.pth",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "LPIPS trunk (torchvision AlexNet, features.* used)",
        ),
        Published(
            "alex.pth",
            "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
            "LPIPS v0.1 linear heads (lin0..lin4)",
        ),
        Published(
            "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "FID Inception (pytorch-fid's port of the TF 2015-12-05 graph)",
        ),
        Published(
            "resnet-50-kinetics.pth",
            "https://drive.google.com/drive/folders/1zvl89AgFAApbH0At-gMuZSeQB_LpNP-M "
            "(kenshohara/3D-ResNets-PyTorch, 'resnet-50-kinetics.pth')",
            "FID-VID 3D ResNet-50 (Hara et al., Kinetics-400), as DisCo's FVD-3DRN50",
        ),
        Published(
            "i3d_torchscript.pt",
            "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
            "FVD I3D (TorchScript of the TF-Hub Kinetics-400 I3D, StyleGAN-V / fvd-comparison)",
        ),
    )
}


def metrics_cache() -> Path:
    """``$MCANIM_WEIGHTS/metrics`` (default ``~/.cache/mcanim/weights/metrics``)."""
    return cache_dir() / "metrics"


def weight_path(name: str, folder: str | Path | None = None) -> Path:
    """Path of a published file; FileNotFoundError naming it, its source and where it goes."""
    published = FILES[name]
    path = Path(folder or metrics_cache()) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the {published.used_by} weights. Download {published.url} "
            f"to {path} (or pass --weights DIR holding {name}; the default folder is "
            "$MCANIM_WEIGHTS/metrics)"
        )
    return path


def load_state(name: str, folder: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of a published ``.pth`` (a ``state_dict`` entry and a DataParallel
    ``module.`` prefix are unwrapped, as in 3D-ResNets' checkpoints)."""
    return read_state_dict(weight_path(name, folder))
