"""FVD's feature network: the I3D (Kinetics-400) TorchScript ``i3d_torchscript.pt`` that
StyleGAN-V and universome/fvd-comparison use, a port of the TF-Hub I3D of the original FVD.

Called as fvd-comparison's ``our_fvd.py`` does: (N, 3, T, H, W) float videos on the 0-255
scale with ``rescale=True`` (the network maps them to [-1, 1]), ``resize=True`` (to
224×224 inside), ``return_features=True`` (the 400-d logits before the softmax).
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.metrics.weights import weight_path

CALL = {"rescale": True, "resize": True, "return_features": True}


def load_i3d(folder: str | Path | None = None) -> torch.jit.ScriptModule:
    """``torch.jit.load`` of ``i3d_torchscript.pt`` (CPU; move it with ``.to``)."""
    return torch.jit.load(str(weight_path("i3d_torchscript.pt", folder)), map_location="cpu").eval()


def i3d_features(net: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """(N, T, 3, H, W) float in [0, 1] -> (N, D) features (400 for the published network)."""
    videos = clips.permute(0, 2, 1, 3, 4).contiguous() * 255.0  # (N, 3, T, H, W) in [0, 255]
    return net(videos, **CALL)
