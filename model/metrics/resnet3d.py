"""FID-VID's feature network: the 3D ResNet-50 of Hara et al. ("Can spatiotemporal 3D CNNs
retrace the history of 2D CNNs and ImageNet?", CVPR 2018) trained on Kinetics-400, as DisCo's
``FVD-3DRN50`` metric uses it, in plain torch.

Module names follow kenshohara/3D-ResNets-PyTorch's ``resnet.py`` (shortcut type B:
``downsample.0`` conv + ``downsample.1`` BN), so ``resnet-50-kinetics.pth`` (a
``state_dict`` with DataParallel's ``module.`` prefix) loads strictly by name. Input: 16-frame
clips of 112×112 RGB on the 0-255 scale minus the Kinetics mean (114.7748, 107.7354, 99.4750),
no division (the repository's ``norm_value=1``); output: the 2048-d global average pool.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.metrics.weights import load_state, load_strict

KINETICS_MEAN = (114.7748, 107.7354, 99.4750)
SIZE = 112


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: bool) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.downsample = (
            nn.Sequential(nn.Conv3d(cin, out, 1, stride=stride, bias=False), nn.BatchNorm3d(out))
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class ResNet3D(nn.Module):
    """(N, 3, T, 112, 112) mean-subtracted 0-255 RGB -> (N, 2048)."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 400) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        cin = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                stage.append(Bottleneck(cin, planes, s, downsample=b == 0))
                cin = planes * Bottleneck.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(cin, num_classes)  # loaded with the file, unused by FID-VID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool3d(x, 3, stride=2, padding=1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return F.adaptive_avg_pool3d(x, 1).flatten(1)  # (N, 2048)


def clip_input(clip: torch.Tensor) -> torch.Tensor:
    """(N, T, 3, H, W) float in [0, 1] -> (N, 3, T, 112, 112) mean-subtracted 0-255."""
    n, t = clip.shape[:2]
    x = F.interpolate(clip.flatten(0, 1), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    x = x.reshape(n, t, 3, SIZE, SIZE).permute(0, 2, 1, 3, 4) * 255.0
    return x - torch.tensor(KINETICS_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)


def load_resnet3d(folder: str | Path | None = None) -> ResNet3D:
    """The Kinetics 3D ResNet-50 from ``resnet-50-kinetics.pth`` (strict by name)."""
    net = ResNet3D()
    load_strict(net, load_state("resnet-50-kinetics.pth", folder), "3D ResNet-50 (FID-VID)")
    return net.eval()
