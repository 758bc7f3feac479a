"""``python -m model.init``: assemble a model folder from the public weights (or at random).

    python -m model.init --preset tiny --out out/tiny                       # random, offline
    python -m model.init --preset tiny --out out/tiny2 --stage 2            # + motion modules
    python -m model.init --preset sd15 --out out/sd15_s1 \\
        --unet sd-v1-5/ --vae sd-v1-5/ --image-encoder sd-image-variations/image_encoder
    python -m model.init --preset sd15 --out out/sd15_s2 --unet ... --vae ... \\
        --image-encoder ... --motion-module mm_sd_v15_v2.ckpt

The SD 1.5 UNet initialises both the denoising UNet and the ReferenceNet (as separate copies);
guiders always start fresh (zero-initialised outputs). ``tiny`` is random unless weights are
given; ``sd15`` needs every public file unless ``--random`` allows random parts (full-size
plumbing and benchmarks only). Dotted ``key=value`` overrides change the preset's config
(every key of :class:`model.config.ModelConfig`, listed by ``--help``); precedence: preset <
flags < overrides. The folder is written by :func:`model.folder.save_model_folder`. It records
no training-data extractors (``preprocessing`` stays empty: it was not trained on any data),
so ``python -m model.animate`` uses ``pose.*`` / ``depth.*`` as configured (MoveNet and the
feet heuristic by default); the trainer's exports record theirs.
"""

from __future__ import annotations

import argparse
import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from model.components import build_image_encoder, build_unet, build_vae
from model.composed import AnimationModel
from model.config import PRESETS, ModelConfig, check_config, preset_config
from model.folder import save_model_folder
from model.guiders import Guiders
from model.motion import build_motion_adapter
from model.weights import load_image_encoder, load_motion_adapter, load_unet, load_vae
from preprocess.devices import DTYPES, torch_dtype
from shards.config import ConfigCLI
from shards.logs import setup_logging

log = logging.getLogger(__name__)

WEIGHT_FLAGS = ("--unet", "--vae", "--image-encoder", "--motion-module")
"""Flags of the ``weights.*`` keys (where the public weights are)."""


def build_cli() -> tuple[ConfigCLI[ModelConfig], argparse.ArgumentParser]:
    """The command line: job flags (``--preset``, ``--out``, ...), flags of the weight
    sources and the seed, ``KEY=VALUE`` for every key of :class:`ModelConfig`."""
    cli = ConfigCLI(ModelConfig, preset="none")
    parser = cli.parser(
        "python -m model.init",
        __doc__.split("\n")[0],
        epilog="The defaults listed below are the sd15 preset's; --preset tiny starts from "
        "model.config.tiny_config instead.",
    )
    parser.add_argument(
        "--preset",
        required=True,
        choices=sorted(PRESETS),
        help="named architecture: tiny (CPU-fast, random weights, tests and demos) | sd15 "
        "(full size: SD 1.5 UNets and VAE, ViT-L/14, AnimateDiff v2)",
    )
    parser.add_argument("--out", required=True, help="model folder to write (replaced if there)")
    for name in WEIGHT_FLAGS:
        cli.flag(parser, name, key="weights." + name[2:].replace("-", "_"))
    parser.add_argument(
        "--stage",
        type=int,
        choices=[1, 2],
        default=None,
        help="2 adds motion modules (implied by --motion-module); 1: none",
    )
    parser.add_argument(
        "--random",
        action="store_true",
        help="sd15: allow random weights for parts not given (plumbing and benchmarks only)",
    )
    cli.flag(parser, "--seed")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="dtype of the written weights (default float32)",
    )
    return cli, parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, ModelConfig]:
    """The job flags and the checked :class:`ModelConfig`: the preset (with motion modules
    for stage 2) < flags < dotted overrides."""
    cli, parser = build_cli()
    args = parser.parse_args(argv)
    motion_module = cli.config(args).weights.motion_module  # from --motion-module or a key
    stage2 = args.stage == 2 or (args.stage is None and bool(motion_module))
    if args.stage == 1 and motion_module:
        raise ValueError("--motion-module makes a stage-2 model; drop --stage 1")
    cli.base = preset_config(args.preset, motion=stage2)
    cfg = cli.config(args)
    check_config(cfg)
    return args, cfg


def _missing_weights(cfg: ModelConfig) -> list[str]:
    w = cfg.weights
    needed = {"--unet": w.unet, "--vae": w.vae, "--image-encoder": w.image_encoder}
    if cfg.motion.enabled:
        needed["--motion-module"] = w.motion_module
    return [flag for flag, value in needed.items() if not value]


def assemble(cfg: ModelConfig) -> AnimationModel:
    """The model of ``cfg``: public weights where ``cfg.weights`` names them, else random
    (seeded by ``cfg.seed``). Both UNets start from the same weights, as separate copies."""
    w = cfg.weights
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = load_unet(w.unet, cfg) if w.unet else build_unet(cfg)
        vae = load_vae(w.vae, cfg) if w.vae else build_vae(cfg)
        encoder = (
            load_image_encoder(w.image_encoder, cfg)
            if w.image_encoder
            else build_image_encoder(cfg)
        )
        guiders = Guiders(cfg.guiders, cfg.unet.block_out_channels[0])
        adapter = None
        if cfg.motion.enabled:
            adapter = (
                load_motion_adapter(w.motion_module, cfg)
                if w.motion_module
                else build_motion_adapter(cfg)
            )
    return AnimationModel(
        cfg,
        vae=vae,
        image_encoder=encoder,
        reference_unet=copy.deepcopy(unet),
        unet=unet,
        guiders=guiders,
        motion_adapter=adapter,
    )


def run(args: argparse.Namespace, cfg: ModelConfig) -> Path:
    """Assemble the model of ``cfg``, write the folder ``args.out``; returns its path."""
    missing = _missing_weights(cfg)
    if cfg.preset != "tiny" and missing and not args.random:
        raise ValueError(
            f"preset {cfg.preset} needs public weights for {missing} (see docs/model.md, "
            "'Weights'), or --random for a random-weight model (plumbing and benchmarks only)"
        )
    if missing:
        log.warning("random weights for %s: outputs are meaningless until trained", missing)
    model = assemble(cfg)
    out = save_model_folder(model, args.out, dtype=torch_dtype(args.dtype, "cpu"))
    print(f"model folder: {out} (preset {cfg.preset}, stage {2 if cfg.motion.enabled else 1})")
    return out


def main(argv: list[str] | None = None) -> int:
    setup_logging("INFO")
    try:
        run(*parse_args(argv))
    except (FileNotFoundError, ValueError) as exc:  # ConfigError, WeightsError included
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
