"""``deepspeed train/main.py``: train one stage of the animation model on preprocessed shards.

    deepspeed train/main.py --config jobs/train/stage1.yaml data.root=s3://bucket/ds \\
        init_from=out/sd15_s1 output_dir=out/train/stage1
    deepspeed train/main.py --config jobs/train/stage2.yaml \\
        init_from=out/train/stage1/export output_dir=out/train/stage2
    deepspeed train/main.py --config jobs/train/stage1.yaml --resume ...   # last checkpoint

Dotted ``key=value`` overrides reach every field of :class:`train.config.TrainConfig`. A
plain ``python train/main.py`` runs one process. See docs/train.md.
"""

# deepspeed runs this file as a script, so train/ comes first on sys.path: no module in
# train/ is named like a standard-library or top-level package, and imports are absolute.
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import torch.distributed as dist

from shards.config import ConfigError, load_config
from shards.reader import WhereError
from train.config import TrainConfig, check_train_config
from train.trainer import Trainer, setup_distributed

log = logging.getLogger("train")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    p = argparse.ArgumentParser(prog="deepspeed train/main.py", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML preset (jobs/train/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = p.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    check_train_config(cfg)
    return args, cfg


def setup_logging(rank: int) -> None:
    """Our packages at INFO on rank 0 (warnings elsewhere), libraries at WARNING."""
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    for name in ("train", "model", "shards", "preprocess"):
        logging.getLogger(name).setLevel(logging.INFO if rank == 0 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    setup_logging(int(os.environ.get("RANK", "0")))
    try:
        args, cfg = parse_args(argv)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    setup_distributed()
    try:
        Trainer(cfg, resume=args.resume).fit()
    except (FileNotFoundError, WhereError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
