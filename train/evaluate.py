"""``python -m train.evaluate``: the paper's metrics for a model folder on held-out clips.

    python -m train.evaluate --checkpoint out/train/stage2/export --data out/shards \\
        --out out/eval [--where "characters_max >= 2"] [--heldout-of out/train/stage2] \\
        [--ablate none,flow,depth_order,ref_pose] [--clips 8] [--frames 64] \\
        [--steps 50 --guidance-scale 1.5 --height 896 --width 640] [--weights DIR] \\
        [standard.size=512 standard.clip_len=16 ...]

Every selected clip (``--where`` over the clips table, optionally only the clips a training
run held out, ``--heldout-of RUN_DIR``) is animated from one of its frames (the first,
``--reference-frame``) and its stored poses: the guider inputs are built as validation builds
them (:func:`train.examples.build_example` with inference's zero background flow, depth order
from the stored ranks) and :func:`model.pipeline.generate`, the inference sequence of
``python -m model.animate`` (DDIM + CFG in overlapping windows), animates. Generated and real
frames are then brought to the unified standard (:mod:`model.metrics.standard`) and scored
(:mod:`model.metrics.suite`). ``--ablate`` evaluates the same checkpoint with one guider's
input zeroed (flow, depth order or reference pose: the paper's Table 4), one table row per
variant. Writes ``OUT/report.json``, ``report.md``, ``report.html`` and contact sheets
``OUT/sheets/VARIANT/KEY.png`` (:mod:`train.report`). Every option is listed by ``--help``.
See docs/evaluate.md.

Evaluation lives in ``train/`` because it reads shards and training runs; ``model/`` stays
free of both.
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

from model.components import build_image_processor
from model.composed import AnimationModel
from model.config import SamplingConfig
from model.folder import load_model_folder
from model.guiders import Conditions
from model.metrics.standard import Standard, unify
from model.metrics.suite import ALL_METRICS, FeatureNets, score_clips
from model.metrics.weights import FILES
from model.pipeline import generate
from preprocess.devices import DTYPES, torch_device, torch_dtype
from preprocess.geometry.canvas import GuiderArrays
from shards.config import ConfigCLI, config_from_dict
from shards.logs import setup_logging
from shards.reader import iter_samples, read_clips
from train.config import TrainConfig
from train.examples import build_example
from train.loader import select_clips
from train.report import contact_sheet, write_report, write_sheet

log = logging.getLogger(__name__)

ABLATIONS = ("none", "flow", "depth_order", "ref_pose")
SAMPLING_FLAGS = ("steps", "guidance_scale", "height", "width", "seed", "window", "stride")
"""``sampling.*`` keys that also have a flag (``--steps``, ``--guidance-scale``, ...)."""


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
    """``auto`` (CUDA when available) | ``cpu`` | ``cuda`` | ``cuda:1`` ... for the model and
    the feature networks."""
    dtype: str = "auto"
    """Model dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU) | ``float32`` | ``float16`` |
    ``bfloat16``."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """DDIM sampling of the animations: steps, guidance, windows, canvas size, seed."""
    standard: Standard = field(default_factory=Standard)
    """The unified standard generated and real frames are brought to before scoring."""


def build_cli() -> tuple[ConfigCLI[EvalConfig], argparse.ArgumentParser]:
    """The command line: flags for the common keys, ``KEY=VALUE`` for every key of
    :class:`EvalConfig` (all listed by ``--help``)."""
    cli = ConfigCLI(EvalConfig, preset="none")
    parser = cli.parser("python -m train.evaluate", __doc__.split("\n")[0])
    for name in ("--checkpoint", "--data", "--out"):
        cli.flag(parser, name, required=True)
    for name in ("--where", "--heldout-of", "--clips", "--frames", "--reference-frame"):
        cli.flag(parser, name)
    cli.flag(parser, "--ablate", metavar=",".join(ABLATIONS))
    cli.flag(parser, "--metrics", metavar=",".join(ALL_METRICS))
    for name in ("--weights", "--stand-in-features", "--device"):
        cli.flag(parser, name)
    cli.flag(parser, "--dtype", choices=["auto", *DTYPES])
    for name in SAMPLING_FLAGS:
        cli.flag(parser, f"--{name.replace('_', '-')}", key=f"sampling.{name}")
    return cli, parser


def parse_args(argv: Sequence[str] | None) -> EvalConfig:
    """The :class:`EvalConfig` of a command line; unknown variants or metrics exit (2)."""
    cli, parser = build_cli()
    cfg = cli.config(parser.parse_args(argv))
    bad = [a for a in cfg.ablate if a not in ABLATIONS] + [
        m for m in cfg.metrics if m not in ALL_METRICS
    ]
    if bad:
        parser.error(f"unknown --ablate/--metrics values {bad}: {ABLATIONS} / {ALL_METRICS}")
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


def animate_clips(
    cfg: EvalConfig, model: AnimationModel, keys: list[str]
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """variant -> key -> {reference, pose, generated, real} frames on the sampling canvas."""
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
            conditions = Conditions.from_arrays(ablated(example.guiders, variant))
            generated = generate(model, example.reference, conditions, n, cfg.sampling)
            log.info("%s %s: %d frames in %.1fs", variant, sample.key, n, time.perf_counter() - t0)
            results[variant][sample.key] = {
                "reference": example.reference,
                "pose": example.guiders.pose,
                "generated": generated,
                "real": example.frames,
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
    """Load the model, animate the selected clips per variant, score them, write the report."""
    device = torch_device(cfg.device)
    model = load_model_folder(cfg.checkpoint, device=device, dtype=torch_dtype(cfg.dtype, device))
    if model.cfg.preset == "tiny":
        log.warning("tiny model: random-weight plumbing model, its scores mean nothing")
    keys = select_keys(cfg)
    log.info("evaluating %d clip(s), variants %s", len(keys), cfg.ablate)
    generated = animate_clips(cfg, model, keys)
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
    setup_logging("INFO")
    try:
        cfg = parse_args(argv)
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:  # missing files, no clips, bad config
        log.error("%s", exc)
        return 2
    print((Path(cfg.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
