"""PWC-Net as MMFlow builds it (``configs/_base_/models/pwcnet.py``), in plain PyTorch.

Read from MMFlow's source (``PWCNetEncoder``/``BasicEncoder``, ``PWCNetDecoder``/``PWCModule``/
``BasicDenseBlock``, ``ContextNet``, ``CorrBlock`` + mmcv ``Correlation``, ``Warp``) and
rewritten here; no mmcv or mmflow code is used (neither installs on this stack). Our module
names differ from MMFlow's: ``preprocess.flow.pwcnet.checkpoint`` maps every checkpoint key.

- **Pyramid** (encoder): 6 levels of 3 convs (3x3, the first with stride 2), channels
  16, 32, 64, 96, 128, 196, LeakyReLU(0.1) after every conv. Level l is at 1 / 2**l.
- **Cost volume**: ``sum_c f1(c, y, x) * f2(c, y + dy, x + dx)`` for dy, dx in [-4, 4] (zero
  outside), no normalisation, channel ``(dy + 4) * 9 + (dx + 4)`` (81 channels), then
  LeakyReLU(0.1). mmcv computes it with a CUDA op; here it is 81 shifted products summed over
  channels (vectorised over batch and pixels, no custom kernels).
- **Decoders**, coarse to fine over levels 6..2: level 6 sees the cost volume alone; below,
  the second image's features are warped by the upsampled flow times ``flow_div / 2**l``
  (bilinear, ``align_corners=True``, zeroed where the sample leaves the image) and the input is
  ``[cost volume, f1, upsampled flow, upsampled feature]``. A dense block of 5 convs (128,
  128, 96, 64, 32 channels, each output concatenated *before* its input) feeds a 3x3 flow
  prediction; levels 6..3 upsample flow and feature with 4x4 stride-2 transposed convs.
- **Context network** on level 2's feature: 6 dilated 3x3 convs (128, 128, 128, 96, 64, 32;
  dilations 1, 2, 4, 8, 16, 1) and a 3x3 conv to 2 channels, added to level 2's flow.

The network predicts flow / ``flow_div`` (20) at 1/4 resolution; :func:`estimate_flow` does
MMFlow's test-time pre- and post-processing around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = (6, 5, 4, 3, 2)
"""Decoder levels, coarse to fine; the output is level 2 (1/4 resolution)."""
NEGATIVE_SLOPE = 0.1


@dataclass(frozen=True)
class PWCNetConfig:
    """Widths of the network. The defaults are MMFlow's ``pwcnet`` config (the public
    checkpoints); :func:`preprocess.flow.pwcnet.checkpoint.config_from_state_dict` reads them from
    a checkpoint, so narrower stand-ins load the same way."""

    pyramid_channels: tuple[int, ...] = (16, 32, 64, 96, 128, 196)
    convs_per_level: int = 3
    dense_channels: tuple[int, ...] = (128, 128, 96, 64, 32)
    context_channels: tuple[int, ...] = (128, 128, 128, 96, 64, 32)
    context_dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1)
    max_displacement: int = 4
    flow_div: float = 20.0

    @property
    def corr_channels(self) -> int:
        return (2 * self.max_displacement + 1) ** 2

    def decoder_in_channels(self, level: int) -> int:
        """Input channels of a level's decoder: cost volume (+ f1, up flow, up feature)."""
        if level == LEVELS[0]:
            return self.corr_channels
        return self.corr_channels + self.pyramid_channels[level - 1] + 4

    def decoder_out_channels(self, level: int) -> int:
        return self.decoder_in_channels(level) + sum(self.dense_channels)


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE)


def correlation(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, (2d+1)**2, H, W): mmcv ``Correlation`` (kernel 1, stride 1)."""
    d = max_displacement
    h, w = f1.shape[-2:]
    padded = F.pad(f2, (d, d, d, d))  # (B, C, H + 2d, W + 2d), zeros outside
    costs = [
        (f1 * padded[:, :, dy : dy + h, dx : dx + w]).sum(1)  # (B, H, W)
        for dy in range(2 * d + 1)
        for dx in range(2 * d + 1)
    ]
    return torch.stack(costs, 1)  # (B, 81, H, W), dy-major


def warp(feat: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``feat`` at x + flow(x) (bilinear, align_corners=True); 0 where it leaves the
    image (MMFlow's ``Warp(use_mask=True)``: sampled ones must exceed 0.9999)."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    gx = (xs + flow[:, 0]) * 2.0 / max(w - 1, 1) - 1.0  # (B, H, W)
    gy = (ys + flow[:, 1]) * 2.0 / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], -1)  # (B, H, W, 2)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    ones = torch.ones((b, 1, h, w), device=feat.device, dtype=feat.dtype)
    inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out * (inside > 0.9999).to(feat.dtype)


class FlowEstimator(nn.Module):
    """One decoder level: dense block -> flow (+ upsampled flow and feature above level 2)."""

    def __init__(self, in_channels: int, dense_channels: tuple[int, ...], upsample: bool):
        super().__init__()
        self.dense = nn.ModuleList()
        for out in dense_channels:
            self.dense.append(nn.Conv2d(in_channels, out, 3, padding=1))
            in_channels += out
        self.predict = nn.Conv2d(in_channels, 2, 3, padding=1)
        self.up_flow = nn.ConvTranspose2d(2, 2, 4, 2, 1) if upsample else None
        self.up_feat = nn.ConvTranspose2d(in_channels, 2, 4, 2, 1) if upsample else None

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        for conv in self.dense:
            x = torch.cat([leaky(conv(x)), x], 1)  # new features first, as MMFlow's DenseLayer
        flow = self.predict(x)  # (B, 2, h, w)
        if self.up_flow is None or self.up_feat is None:
            return flow, x, None, None
        return flow, x, self.up_flow(flow), self.up_feat(x)


class PWCNet(nn.Module):
    """(B, 3, H, W) x2 in [0, 1] BGR, H and W multiples of 64 -> (B, 2, H/4, W/4) flow from
    image 1 to image 2 divided by ``flow_div`` (image 1 at x matches image 2 at x + flow)."""

    def __init__(self, cfg: PWCNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or PWCNetConfig()
        self.pyramid = nn.ModuleList()
        in_ch = 3
        for out in cfg.pyramid_channels:
            layers: list[nn.Module] = []
            for j in range(cfg.convs_per_level):
                layers += [nn.Conv2d(in_ch, out, 3, stride=2 if j == 0 else 1, padding=1)]
                layers += [nn.LeakyReLU(NEGATIVE_SLOPE)]
                in_ch = out
            self.pyramid.append(nn.Sequential(*layers))
        self.estimators = nn.ModuleDict(
            {
                f"level{lv}": FlowEstimator(
                    cfg.decoder_in_channels(lv), cfg.dense_channels, upsample=lv != LEVELS[-1]
                )
                for lv in LEVELS
            }
        )
        context: list[nn.Module] = []
        in_ch = cfg.decoder_out_channels(LEVELS[-1])
        for out, dil in zip(cfg.context_channels, cfg.context_dilations, strict=True):
            context += [nn.Conv2d(in_ch, out, 3, padding=dil, dilation=dil)]
            in_ch = out
        context += [nn.Conv2d(in_ch, 2, 3, padding=1)]
        self.context = nn.ModuleList(context)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the 6 pyramid levels, level l at index l - 1."""
        out = []
        for level in self.pyramid:
            images = level(images)
            out.append(images)
        return out

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        b = img1.shape[0]
        both = self.features(torch.cat([img1, img2]))  # one pass over the 2B images
        d, div = self.cfg.max_displacement, self.cfg.flow_div
        upflow = upfeat = None
        for lv in LEVELS:
            f1, f2 = both[lv - 1][:b], both[lv - 1][b:]
            if upflow is None or upfeat is None:
                x = leaky(correlation(f1, f2, d))
            else:
                warped = warp(f2, upflow * (div / 2**lv))
                x = torch.cat([leaky(correlation(f1, warped, d)), f1, upflow, upfeat], 1)
            flow, feat, upflow, upfeat = self.estimators[f"level{lv}"](x)
        for conv in self.context[:-1]:
            feat = leaky(conv(feat))
        return flow + self.context[-1](feat)  # (B, 2, H/4, W/4)


def estimate_flow(net: PWCNet, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """MMFlow's test pipeline around :class:`PWCNet`: (B, 3, H, W) float 0..255 BGR pairs ->
    (B, 2, H, W) flow in input pixels.

    ``InputResize(exponent=6)``: both images resized (bilinear) to the next multiples of 64,
    normalised to [0, 1]; the level-2 prediction is upsampled (bilinear, align_corners=False)
    to that size and multiplied by ``flow_div``, then resized back to H x W with x divided by
    the width scale and y by the height scale.
    """
    h, w = img1.shape[-2:]
    nh, nw = -(-h // 64) * 64, -(-w // 64) * 64
    pair = torch.cat([img1, img2]) / 255.0  # (2B, 3, H, W)
    if (nh, nw) != (h, w):
        pair = F.interpolate(pair, size=(nh, nw), mode="bilinear", align_corners=False)
    b = img1.shape[0]
    pred = net(pair[:b], pair[b:])  # (B, 2, nh/4, nw/4)
    flow = F.interpolate(pred, size=(nh, nw), mode="bilinear", align_corners=False)
    flow = flow * net.cfg.flow_div
    if (nh, nw) != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        flow = flow * torch.tensor([w / nw, h / nh], device=flow.device).view(1, 2, 1, 1)
    return flow  # (B, 2, H, W)
