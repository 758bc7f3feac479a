"""A manual check, not collected by pytest: the FID Inception and the LPIPS AlexNet of
model/metrics/ against the torchvision-based reference code itself (pytorch-fid 0.3.0's
``InceptionV3``, torchvision 0.28's ``alexnet`` inside ``lpips`` 0.1.4), which cannot run in the
project venv (torchvision must not be installed there: docs/evaluate.md, Testing).

Run it in a throwaway venv (torchvision's wheel is a CUDA build: its C ops do not load on CPU
torch, so ``torchvision._meta_registrations`` is stubbed; its Python model code runs):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 numpy scipy pillow tqdm
    /tmp/refvenv/bin/pip install --no-deps torchvision==0.28.0 pytorch-fid==0.3.0 lpips==0.1.4
    /tmp/refvenv/bin/python tests/model/torchvision_reference_check.py .

It prints the largest differences (0 when the trees compute the same) and exits non-zero when
one exceeds 1e-5. Our modules are loaded from their files with ``model.metrics.weights``
stubbed, so the venv needs none of the project's other dependencies.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import torch

log = logging.getLogger("torchvision_reference_check")


def load_ours(root: Path) -> tuple[type, type]:
    """(FIDInception, LPIPS) from ROOT/model/metrics without importing the rest of it."""
    for name in ("model", "model.metrics"):
        package = types.ModuleType(name)
        package.__path__ = [str(root.joinpath(*name.split(".")))]
        sys.modules[name] = package
    sys.modules["model.metrics.weights"] = types.ModuleType("model.metrics.weights")
    sys.modules["model.metrics.weights"].load_state = None  # type: ignore[attr-defined]
    sys.modules["model.metrics.weights"].load_strict = None  # type: ignore[attr-defined]
    from model.metrics.inception import FIDInception
    from model.metrics.lpips import LPIPS

    return FIDInception, LPIPS


def calibrate(net: torch.nn.Module, x: torch.Tensor) -> None:
    """BatchNorm statistics of ``x`` (one training-mode forward), so every branch counts."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()


def main(root: Path) -> int:
    fid_inception, lpips_net = load_ours(root)
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("stub")
    import lpips
    import pytorch_fid.inception as pfi
    import torchvision

    torch.manual_seed(0)
    x = torch.rand(2, 3, 180, 240)  # not 299: both resize
    ours = fid_inception()
    calibrate(ours, x)
    state = ours.state_dict()
    pfi.load_state_dict_from_url = lambda *_, **__: state  # type: ignore[assignment]
    ref = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()  # strict load
    with torch.no_grad():
        fid_diff = float((ours(x) - ref(x)[0].flatten(1)).abs().max())

    torch.manual_seed(1)
    trunk = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if "features" in k}
    mine = lpips_net()
    for k in range(5):
        torch.nn.init.uniform_(getattr(mine, f"lin{k}").model[1].weight, 0.0, 1.0)
    mine.load_state_dict({**mine.state_dict(), **trunk})
    theirs = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    slices = ((0, 1), (2, 3, 4), (5, 6, 7), (8, 9), (10, 11))
    theirs.net.load_state_dict(
        {
            f"slice{s}.{k.split('.', 1)[1]}": v
            for k, v in trunk.items()
            for s, idx in enumerate(slices, 1)
            if int(k.split(".")[1]) in idx
        }
    )
    for k in range(5):
        theirs.lins[k].model[-1].weight.data.copy_(getattr(mine, f"lin{k}").model[1].weight)
    a, b = torch.rand(3, 3, 96, 128) * 2 - 1, torch.rand(3, 3, 96, 128) * 2 - 1
    with torch.no_grad():
        lpips_diff = float((mine.eval()(a, b) - theirs.eval()(a, b).flatten()).abs().max())
    log.info("pytorch-fid InceptionV3 vs FIDInception: max |diff| %.3g", fid_diff)
    log.info("lpips + torchvision alexnet vs LPIPS: max |diff| %.3g", lpips_diff)
    return int(max(fid_diff, lpips_diff) > 1e-5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
