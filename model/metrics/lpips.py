"""LPIPS v0.1 (Zhang et al. 2018) with the AlexNet trunk, as richzhang/PerceptualSimilarity's
``lpips.LPIPS(net='alex', version='0.1')``, in plain torch (the ``lpips`` package needs
torchvision).

The trunk is torchvision's AlexNet ``features`` (the same module indices, so
``alexnet-owt-7be5be79.pth``'s ``features.*`` load by name); the heads are ``lin0..lin4``
(``Dropout`` then a bias-free 1×1 conv, so ``alex.pth``'s ``linK.model.1.weight`` load by
name). Forward: inputs in [-1, 1], scaling layer (shift/scale constants of the reference
code), the five ReLU outputs, unit-normalised over channels, squared difference, 1×1 heads,
spatial mean, summed over the five layers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from model.metrics.weights import load_state, load_strict

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
TAPS = (1, 4, 7, 9, 11)  # ReLU outputs of features (relu1..relu5)
CHANNELS = (64, 192, 384, 256, 256)
MIN_SIZE = 32  # smaller inputs vanish in AlexNet's strided conv and pools


def alexnet_features() -> nn.Sequential:
    """torchvision's ``AlexNet.features`` layer for layer."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(3, 2),
    )


class LinearHead(nn.Module):
    """``NetLinLayer``: dropout then a bias-free 1×1 conv to one channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Perceptual distance of image pairs: (N, 3, H, W) in [-1, 1] -> (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = alexnet_features()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", LinearHead(c))

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
            if i == TAPS[-1]:
                break
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if min(a.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS-Alex needs images of at least {MIN_SIZE} px, got {a.shape}")
        total = torch.zeros(a.shape[0], device=a.device, dtype=a.dtype)
        for k, (fa, fb) in enumerate(zip(self.taps(a), self.taps(b), strict=True)):
            na = fa / (fa.square().sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.square().sum(1, keepdim=True).sqrt() + 1e-10)
            head = getattr(self, f"lin{k}")
            total = total + head((na - nb).square()).mean(dim=(1, 2, 3))  # (N,)
        return total


def load_lpips(folder: str | Path | None = None) -> LPIPS:
    """LPIPS-Alex v0.1 from ``alexnet-owt-7be5be79.pth`` and ``alex.pth`` (strict by name)."""
    net = LPIPS()
    trunk = load_state("alexnet-owt-7be5be79.pth", folder)
    state = {k: v for k, v in trunk.items() if k.startswith("features.")}
    state.update(load_state("alex.pth", folder))
    load_strict(net, state, "LPIPS (alexnet-owt-7be5be79.pth + alex.pth)")
    return net.eval()
