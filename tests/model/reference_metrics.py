"""The reference implementations the metric parity tests compare model/metrics/ against,
imported without torchvision (which this project must not install: the wheel matching CPU
torch 2.13 is a CUDA build whose ``_C.so`` needs ``libc10_cuda.so``, and while it is installed
transformers' CLIP classes fail to import).

- ``lpips`` 0.1.4 (richzhang/PerceptualSimilarity, installed ``--no-deps``): its
  ``pretrained_networks`` does ``from torchvision import models as tv`` at import and calls
  ``tv.alexnet(pretrained=...).features`` once per network. A stand-in ``torchvision.models``
  is in ``sys.modules`` only while the package is imported; its ``alexnet`` hands the package
  a torchvision-layout ``features`` stack, so the package's own scaling layer, tap slices,
  normalisation, heads and averaging run on it. The head weights are the package's own
  bundled ``weights/v0.1/alex.pth`` (the published v0.1 heads).
- ``torch-fidelity`` 0.4.0 (installed ``--no-deps --target .venv/refpkgs``, outside
  site-packages, because its wheel also installs a top-level ``tests`` package, its own tests,
  that would shadow this project's): its FID Inception,
  ``feature_extractor_inceptionv3.FeatureExtractorInceptionV3``, is self-contained torch
  code; only the package ``__init__`` pulls torchvision (CLIP, VGG and dataset modules), so the
  module is imported from that folder with the package's ``__init__`` skipped.
- MONAI 1.6.1's ``monai.networks.nets.resnet.ResNet``: the 3D ResNet of Hara et al.'s
  3D-ResNets-PyTorch (bottleneck, shortcut B), built with the Kinetics ResNet-50 settings.

Where the data goes next: tests/model/test_feature_net_parity.py.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from model.metrics.lpips import alexnet_features


def import_lpips() -> Any:
    """The ``lpips`` package, imported with the stand-in ``torchvision.models``."""
    if "lpips" in sys.modules:
        return sys.modules["lpips"]
    models = types.ModuleType("torchvision.models")

    def alexnet(pretrained: bool = False, **_: object) -> types.SimpleNamespace:
        assert not pretrained, "the tests load their own trunk weights"
        return types.SimpleNamespace(features=alexnet_features())

    models.alexnet = alexnet  # type: ignore[attr-defined]
    tv = types.ModuleType("torchvision")
    tv.models = models  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:  # the stand-in is gone again after the import
        mp.setitem(sys.modules, "torchvision", tv)
        mp.setitem(sys.modules, "torchvision.models", models)
        return importlib.import_module("lpips")


def lpips_head_file() -> Path:
    """The published LPIPS v0.1 AlexNet heads the ``lpips`` wheel ships."""
    return Path(import_lpips().__file__).parent / "weights" / "v0.1" / "alex.pth"


TORCH_FIDELITY = Path(sys.prefix) / "refpkgs" / "torch_fidelity"
"""Where ``make setup`` puts torch-fidelity (``pip install --no-deps --target``)."""


def import_torch_fidelity_inception() -> Any:
    """``torch_fidelity.feature_extractor_inceptionv3`` without the package ``__init__``."""
    name = "torch_fidelity.feature_extractor_inceptionv3"
    if name in sys.modules:
        return sys.modules[name]
    if not (TORCH_FIDELITY / "feature_extractor_inceptionv3.py").is_file():
        raise FileNotFoundError(
            f"{TORCH_FIDELITY} not found: run make setup, or pip install --no-deps "
            f"--target {TORCH_FIDELITY.parent} torch-fidelity==0.4.0"
        )
    package = types.ModuleType("torch_fidelity")
    package.__path__ = [str(TORCH_FIDELITY)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "torch_fidelity", package)
        return importlib.import_module(name)


def monai_resnet50_3d() -> nn.Module:
    """MONAI's 3D ResNet-50 with the Kinetics settings of 3D-ResNets-PyTorch: 7×7×7 stem of
    stride (1, 2, 2), bottlenecks (3, 4, 6, 3), shortcut B without bias, 2048-d pool output
    (no classifier)."""
    from monai.networks.nets.resnet import ResNet

    return ResNet(
        block="bottleneck",
        layers=[3, 4, 6, 3],
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=3,
        n_input_channels=3,
        conv1_t_size=7,
        conv1_t_stride=(1, 2, 2),  # type: ignore[arg-type]
        shortcut_type="B",
        bias_downsample=False,
        feed_forward=False,
    )
