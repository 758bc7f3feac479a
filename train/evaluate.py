"""``python -m train.evaluate``: the paper's metrics for a model folder on held-out clips.

    python -m train.evaluate --checkpoint out/train/stage2/export --data out/shards \\
        --out out/eval [--where "characters_max >= 2"] [--heldout-of out/train/stage2] \\
        [--ablate none,flow,order,reference_pose] [--clips 8] [--frames 64] \\
        [--steps 50 --guidance-scale 1.5 --height 896 --width 640] [--weights DIR] \\
        [standard.size=512 standard.clip_len=16 ...]

Every selected clip (``--where`` over the clips table, optionally only the clips a training
run held out, ``--heldout-of RUN_DIR``) is animated from one of its frames (the first,
``--reference-frame``) and its stored poses: the guider inputs are built as ``python -m
model.animate`` builds them (:func:`train.examples.inference_example`: zero background flow,
the reference frame's depth order held for every frame, the extractor outputs read from the
clip) and :func:`model.pipeline.generate`, the inference sequence of ``python -m
model.animate`` (DDIM + CFG in overlapping windows), animates; validation does the same.
Generated and real frames are then brought to the unified standard
(:mod:`model.metrics.standard`) and scored (:mod:`model.metrics.suite`). ``--ablate`` zeroes
one guider's input *at inference* on the same trained model (``pose``, ``flow``, ``order``,
``reference_pose``: the model's guider names), one table row per entry; the paper's Table 4
variants are instead *trained* without the guider (``stage.guiders``, docs/train.md), and
evaluating such a model reports its guiders. When ``--data`` was made by other extractors
than the model's training data (its folder's ``preprocessing`` record) a warning says so. Writes ``OUT/report.json``, ``report.md``, ``report.html`` and contact sheets
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
from model.extractors import same_extractors
from model.folder import load_model_folder
from model.guiders import GUIDER_NAMES, Conditions
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
from train.examples import inference_example
from train.loader import select_clips
from train.provenance import read_provenance
from train.report import contact_sheet, write_report, write_sheet

log = logging.getLogger(__name__)

ABLATIONS = ("none", *GUIDER_NAMES)
"""``--ablate`` entries: ``none`` (the model as it is) or a guider whose input is zeroed."""
RENAMED = {"depth_order": "order", "ref_pose": "reference_pose"}
"""Former ``--ablate`` names, refused with their new name (report rows are keyed by them)."""
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
    """Inference-time input zeroing, one report row each: ``none`` (the model as it is) or a
    guider name (``pose``, ``flow``, ``order``, ``reference_pose``) whose input is set to zero
    at inference on this same model. Not the paper's Table 4 ablation, whose variants are
    trained without the guider (``stage.guiders`` in training)."""
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
    accept_unrecorded: bool = False
    """Accept a model folder of format version 1, which does not record the extractors of
    its training data (``--data``'s are then not compared with them)."""
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
    cli.flag(parser, "--accept-unrecorded")
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
    renamed = [f"{a} is now {RENAMED[a]}" for a in cfg.ablate if a in RENAMED]
    if renamed:
        parser.error(f"--ablate uses the model's guider names: {'; '.join(renamed)}")
    bad = [a for a in cfg.ablate if a not in ABLATIONS] + [
        m for m in cfg.metrics if m not in ALL_METRICS
    ]
    if bad:
        parser.error(f"unknown --ablate/--metrics values {bad}: {ABLATIONS} / {ALL_METRICS}")
    return cfg


def ablated(guiders: GuiderArrays, variant: str) -> GuiderArrays:
    """The guider inputs with the input of guider ``variant`` zeroed (``none``: unchanged)."""
    if variant == "none":
        return guiders
    if variant not in GUIDER_NAMES:
        raise ValueError(f"--ablate {variant!r}: not a guider name ({list(GUIDER_NAMES)})")
    current = getattr(guiders, variant)
    if current is None:
        raise ValueError(f"--ablate {variant}: the model has no {variant} guider to zero")
    return replace(guiders, **{variant: np.zeros_like(current)})


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
    geo, inputs = model.cfg.geometry, model.cfg.guiders.names
    missing = [v for v in cfg.ablate if v != "none" and v not in inputs]
    if missing:
        raise ValueError(
            f"--ablate {missing}: the model has no such guider (its guiders: {inputs}); a "
            "model trained without one needs no zeroing"
        )
    results: dict[str, dict[str, dict[str, np.ndarray]]] = {v: {} for v in cfg.ablate}
    fields = ("mp4", "pose.npy", "ranks.npy", "depth.npz", "json")
    for sample in iter_samples(cfg.data, fields=fields, keys=keys):
        n = len(sample.frames) if not cfg.frames else min(cfg.frames, len(sample.frames))
        if not 0 <= cfg.reference_frame < len(sample.frames):
            raise ValueError(f"{sample.key}: no frame {cfg.reference_frame} ({len(sample.frames)})")
        frames = list(range(n))
        example = inference_example(
            sample, cfg.reference_frame, frames, size, geo, processor, inputs
        )
        for variant in cfg.ablate:
            t0 = time.perf_counter()
            conditions = Conditions.from_arrays(ablated(example.guiders, variant))
            generated = generate(model, example.reference, conditions, n, cfg.sampling)
            log.info("%s %s: %d frames in %.1fs", variant, sample.key, n, time.perf_counter() - t0)
            assert example.guiders.pose is not None  # always made, for the sheets
            results[variant][sample.key] = {
                "reference": example.reference,
                "pose": example.guiders.pose,
                "generated": generated,
                "real": example.frames,
            }
    return results


def check_data_extractors(cfg: EvalConfig, model: AnimationModel) -> None:
    """Warn when ``--data`` was made by other extractors than the model's training data:
    evaluation reads the clips' stored poses and depth, so their extractors are the inputs'."""
    record = model.cfg.preprocessing
    if not record.recorded:
        log.info("%s records no training-data extractors: not compared", cfg.checkpoint)
        return
    data = read_provenance(cfg.data).record
    if not same_extractors(record, data):
        log.warning(
            "%s was made by other extractors than the model's training data %s (pose %s, "
            "depth %s here; pose %s, depth %s there): the guider inputs differ from training",
            cfg.data,
            record.data,
            data.backends.get("pose", {}).get("name", data.pose and data.pose.backend),
            data.backends.get("depth", {}).get("name", data.depth and data.depth.backend),
            record.backends.get("pose", {}).get("name", record.pose and record.pose.backend),
            record.backends.get("depth", {}).get("name", record.depth and record.depth.backend),
        )


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
    model = load_model_folder(
        cfg.checkpoint,
        device=device,
        dtype=torch_dtype(cfg.dtype, device),
        accept_unrecorded=cfg.accept_unrecorded,
    )
    if model.cfg.preset == "tiny":
        log.warning("tiny model: random-weight plumbing model, its scores mean nothing")
    check_data_extractors(cfg, model)
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
            "model_guiders": list(model.cfg.guiders.names),
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
