"""``python -m model.evaluate``: the paper's metrics for a model folder on held-out clips.

    python -m model.evaluate --checkpoint out/train/stage2/export --data out/shards \\
        --out out/eval [--where "characters_max >= 2"] [--heldout-of out/train/stage2] \\
        [--ablate none,flow,depth_order,ref_pose] [--clips 8] [--frames 64] \\
        [--steps 50 --guidance-scale 1.5 --height 896 --width 640] [--weights DIR] \\
        [standard.size=512 standard.clip_len=16 ...]

Every selected clip (``--where`` over the clips table, optionally only the clips a training
run held out, ``--heldout-of RUN_DIR``) is animated from one of its frames (the first,
``--reference-frame``) and its stored poses, through the inference path of periodic
validation (:func:`train.validation.validation_sample`: zero background flow, depth order
held from the reference, DDIM + CFG in overlapping windows, as ``model.animate``). Generated
and real frames are then brought to the unified standard (:mod:`model.metrics.standard`) and
scored (:mod:`model.metrics.suite`). ``--ablate`` evaluates the same checkpoint with one
guider's input zeroed (flow, depth order or reference pose: the paper's Table 4), one table
row per variant. Writes ``OUT/report.json``, ``report.md``, ``report.html`` and contact sheets
``OUT/sheets/VARIANT/KEY.png``. See docs/evaluate.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from model.animate import DTYPES, AnimateConfig, _device_dtype
from model.components import build_image_processor
from model.composed import AnimationModel
from model.config import SamplingConfig, apply_overrides
from model.folder import load_model_folder
from model.metrics.standard import Standard, unify
from model.metrics.suite import ALL_METRICS, FeatureNets, score_clips
from model.metrics.weights import FILES
from model.report import contact_sheet, write_report, write_sheet
from preprocess.geometry.canvas import GuiderArrays
from shards.config import config_from_dict
from shards.reader import iter_samples, read_clips

log = logging.getLogger(__name__)

ABLATIONS = ("none", "flow", "depth_order", "ref_pose")


@dataclass
class EvalConfig:
    """One evaluation run."""

    checkpoint: str = ""
    """Model folder (a training export or python -m model.init)."""
    data: str = ""
    """Preprocessing output root (shards + clips table)."""
    out: str = ""
    """Report folder."""
    where: str = ""
    """SQL filter over the clips table (as ``data.where`` in training)."""
    heldout_of: str = ""
    """Training run folder: keep only the clips it held out (its config.yaml's selection)."""
    clips: int = 0
    """Evaluate at most this many clips, in key order (0: all selected)."""
    frames: int = 0
    """Animate at most this many frames per clip, from the first (0: all)."""
    reference_frame: int = 0
    """Clip frame used as the reference image."""
    ablate: list[str] = field(default_factory=lambda: ["none"])
    """Variants: none | flow | depth_order | ref_pose (that guider's input zeroed)."""
    metrics: list[str] = field(default_factory=lambda: list(ALL_METRICS))
    """Metrics to compute (l1 psnr ssim lpips fid fid_vid fvd)."""
    weights: str = ""
    """Folder of the feature networks' published files (default $MCANIM_WEIGHTS/metrics)."""
    stand_in_features: bool = False
    """Random-weight feature networks of the same structure (plumbing only; labelled)."""
    device: str = "auto"
    dtype: str = "auto"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    standard: Standard = field(default_factory=Standard)


def parse_args(argv: Sequence[str] | None) -> EvalConfig:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n")[0])
    for name in ("checkpoint", "data", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--where", default="")
    p.add_argument("--heldout-of", default="")
    p.add_argument("--clips", type=int, default=0)
    p.add_argument("--frames", type=int, default=0)
    p.add_argument("--reference-frame", type=int, default=0)
    p.add_argument("--ablate", default="none", help=f"comma list of {ABLATIONS}")
    p.add_argument("--metrics", default=",".join(ALL_METRICS))
    p.add_argument("--weights", default="")
    p.add_argument("--stand-in-features", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    for name in ("steps", "guidance_scale", "height", "width", "seed", "window", "stride"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"sampling.{name}", default=None)
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = p.parse_args(argv)
    flags = vars(args)
    dotted = [f"{k}={v}" for k, v in flags.items() if k.startswith("sampling.") and v is not None]
    lists = {
        k: [x.strip() for x in flags[k].split(",") if x.strip()] for k in ("ablate", "metrics")
    }
    plain = {k: v for k, v in flags.items() if "." not in k and k not in ("overrides", *lists)}
    base = EvalConfig(**plain, ablate=lists["ablate"], metrics=lists["metrics"])
    cfg = apply_overrides(base, [*dotted, *args.overrides])
    bad = [a for a in cfg.ablate if a not in ABLATIONS] + [
        m for m in cfg.metrics if m not in ALL_METRICS
    ]
    if bad:
        raise SystemExit(f"unknown --ablate/--metrics values {bad}: {ABLATIONS} / {ALL_METRICS}")
    return cfg


def ablated(guiders: GuiderArrays, variant: str) -> GuiderArrays:
    """The guider inputs with one of them zeroed (``none``: unchanged)."""
    name = {"none": "", "flow": "flow", "depth_order": "order", "ref_pose": "reference_pose"}[
        variant
    ]
    if not name:
        return guiders
    return replace(guiders, **{name: np.zeros_like(getattr(guiders, name))})


def select_keys(cfg: EvalConfig) -> list[str]:
    """Keys of the clips to evaluate: ``where``, then ``heldout_of``, then ``clips``."""
    keys = sorted(read_clips(cfg.data, cfg.where or None, ["key"])["key"].to_pylist())
    if cfg.heldout_of:
        from train.config import TrainConfig
        from train.loader import select_clips

        path = Path(cfg.heldout_of) / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --heldout-of names a training run folder")
        run = config_from_dict(TrainConfig, yaml.safe_load(path.read_text()) or {})
        held = set(select_clips(replace(run.data, root=cfg.data), run.validation.clips).holdout)
        keys = [k for k in keys if k in held]
    keys = keys[: cfg.clips] if cfg.clips else keys
    if not keys:
        raise ValueError(
            f"{cfg.data}: no clip selected (where={cfg.where!r}, heldout_of={cfg.heldout_of!r})"
        )
    return keys


def generate(
    cfg: EvalConfig, model: AnimationModel, keys: list[str]
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """variant -> key -> {reference, pose, generated, real} frames on the sampling canvas."""
    from train.examples import build_example
    from train.validation import validation_sample

    processor = build_image_processor(model.cfg)
    size = (cfg.sampling.height, cfg.sampling.width)
    results: dict[str, dict[str, dict[str, np.ndarray]]] = {v: {} for v in cfg.ablate}
    for sample in iter_samples(cfg.data, keys=keys):
        n = len(sample.frames) if not cfg.frames else min(cfg.frames, len(sample.frames))
        if not 0 <= cfg.reference_frame < len(sample.frames):
            raise ValueError(f"{sample.key}: no frame {cfg.reference_frame} ({len(sample.frames)})")
        example = build_example(
            sample, cfg.reference_frame, list(range(n)), size, model.cfg.geometry, processor, True
        )
        for variant in cfg.ablate:
            t0 = time.perf_counter()
            ex = replace(example, guiders=ablated(example.guiders, variant))
            result = validation_sample(model, ex, replace(cfg.sampling))
            log.info("%s %s: %d frames in %.1fs", variant, sample.key, n, time.perf_counter() - t0)
            results[variant][sample.key] = {
                "reference": example.reference,
                "pose": example.guiders.pose,
                "generated": result.generated,
                "real": result.real,
            }
    return results


def implementations() -> dict[str, str]:
    """What each number follows (written into the report)."""
    return {
        "l1": "mean |g - r| on [0, 1] values, per frame, averaged over frames",
        "psnr": "10 log10(255^2 / MSE) per frame, capped at 100 dB (identical frames)",
        "ssim": "Gaussian 11x11 sigma 1.5, K1 0.01 K2 0.03, per RGB channel, valid positions",
        "lpips": "LPIPS v0.1 AlexNet: " + " + ".join(("alexnet-owt-7be5be79.pth", "alex.pth")),
        "fid": f"pytorch-fid Inception, {FILES['pt_inception-2015-12-05-6726825d.pth'].name}, "
        "2048-d pool features of every frame",
        "fid_vid": "DisCo FVD-3DRN50: 3D ResNet-50 Kinetics (resnet-50-kinetics.pth), 2048-d "
        "pool features of 16-frame segments at 112x112",
        "fvd": "I3D TorchScript (i3d_torchscript.pt, StyleGAN-V / fvd-comparison), 400-d "
        "logits of 16-frame segments, rescale+resize inside",
    }


def run(cfg: EvalConfig) -> dict[str, Any]:
    device, dtype = _device_dtype(AnimateConfig(device=cfg.device, dtype=cfg.dtype))
    model = load_model_folder(cfg.checkpoint, device=device, dtype=dtype)
    if model.cfg.preset == "tiny":
        log.warning("tiny model: random-weight plumbing model, its scores mean nothing")
    keys = select_keys(cfg)
    log.info("evaluating %d clip(s), variants %s", len(keys), cfg.ablate)
    generated = generate(cfg, model, keys)
    nets = FeatureNets.load(cfg.metrics, cfg.weights or None, cfg.stand_in_features, device)
    out = Path(cfg.out)
    report: dict[str, Any] = {
        "settings": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("sampling", "standard")},
            "sampling": asdict(cfg.sampling),
            "standard": cfg.standard.to_dict(),
            "model_preset": model.cfg.preset,
            "implementations": implementations(),
        },
        "clips": sorted(generated[cfg.ablate[0]]),
        "variants": {},
    }
    sheets: list[str] = []
    real = {k: unify(c["real"], cfg.standard) for k, c in generated[cfg.ablate[0]].items()}
    real_features: dict[str, np.ndarray] = {}  # the same real clips for every variant
    for variant, clips in generated.items():
        pairs = [(unify(c["generated"], cfg.standard), real[k]) for k, c in clips.items()]
        per_clip, metrics = score_clips(pairs, nets, cfg.standard, real_features)
        for name in ("l1", "psnr", "ssim"):
            if name not in cfg.metrics:
                metrics.pop(name, None)
        report["variants"][variant] = {
            "metrics": metrics,
            "per_clip": {key: per_clip[str(i)] for i, key in enumerate(clips)},
        }
        for key, c in clips.items():
            rel = f"sheets/{variant}/{key}.png"
            write_sheet(
                out / rel, contact_sheet(c["reference"], c["pose"], c["generated"], c["real"])
            )
            sheets.append(rel)
    write_report(out, report, sheets)
    log.info("wrote %s/report.json, report.md, report.html and %d sheet(s)", out, len(sheets))
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = parse_args(argv)
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print((Path(cfg.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
