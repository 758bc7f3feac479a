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
plumbing and benchmarks only). Dotted ``key=value`` overrides change the preset's config.
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
from model.config import ModelConfig, apply_overrides, check_config, preset_config
from model.folder import save_model_folder
from model.guiders import Guiders
from model.motion import build_motion_adapter
from model.weights import load_image_encoder, load_motion_adapter, load_unet, load_vae

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.init", description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True, choices=["tiny", "sd15"])
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--unet", default="", help="SD 1.5 root, its unet/ folder, or a single file")
    p.add_argument("--vae", default="", help="SD 1.5 root, its vae/ folder, or a single file")
    p.add_argument("--image-encoder", default="", help="CLIP image_encoder/ folder")
    p.add_argument("--motion-module", default="", help="mm_sd_v15_v2.ckpt or adapter folder")
    p.add_argument(
        "--stage",
        type=int,
        choices=[1, 2],
        default=None,
        help="2 adds motion modules (implied by --motion-module)",
    )
    p.add_argument(
        "--random",
        action="store_true",
        help="sd15: allow random weights for parts not given (plumbing only)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random initialisation")
    p.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the written weights"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="config overrides, e.g. guiders.block_out_channels=[16,32,64,128]",
    )
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> ModelConfig:
    """Preset < flags < dotted overrides."""
    stage2 = args.stage == 2 or (args.stage is None and bool(args.motion_module))
    if args.stage == 1 and args.motion_module:
        raise ValueError("--motion-module makes a stage-2 model; drop --stage 1")
    cfg = preset_config(args.preset, motion=stage2)
    cfg.seed = args.seed
    cfg.weights.unet = args.unet
    cfg.weights.vae = args.vae
    cfg.weights.image_encoder = args.image_encoder
    cfg.weights.motion_module = args.motion_module
    cfg = apply_overrides(cfg, args.overrides)
    check_config(cfg)
    return cfg


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


def run(args: argparse.Namespace) -> Path:
    """Resolve the config, assemble the model, write the folder; returns its path."""
    cfg = resolve_config(args)
    missing = _missing_weights(cfg)
    if cfg.preset != "tiny" and missing and not args.random:
        raise ValueError(
            f"preset {cfg.preset} needs public weights for {missing} (see docs/model.md, "
            "'Weights'), or --random for a random-weight model (plumbing and benchmarks only)"
        )
    if missing:
        log.warning("random weights for %s: outputs are meaningless until trained", missing)
    model = assemble(cfg)
    out = save_model_folder(model, args.out, dtype=DTYPES[args.dtype])
    print(f"model folder: {out} (preset {cfg.preset}, stage {2 if cfg.motion.enabled else 1})")
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError) as exc:  # ConfigError, WeightsError included
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
