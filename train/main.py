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
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Sequence

import deepspeed
import torch
import torch.distributed as dist

from model.folder import ModelFormatError
from shards.config import ConfigCLI, ConfigError
from shards.logs import setup_logging
from shards.reader import WhereError
from shards.schema import FormatVersionError
from train.config import TrainConfig, check_train_config
from train.trainer import Trainer

log = logging.getLogger("train")


def build_cli() -> tuple[ConfigCLI[TrainConfig], argparse.ArgumentParser]:
    """The command line: ``--config`` preset, ``--resume``, ``KEY=VALUE`` for every key of
    :class:`TrainConfig` (all listed by ``--help``)."""
    cli = ConfigCLI(TrainConfig, preset="required")
    parser = cli.parser("deepspeed train/main.py", __doc__.split("\n")[0])
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint under output_dir/checkpoints (model, "
        "optimizer, schedule, EMA, data positions and RNG states); a finished run only "
        "writes its export again",
    )
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    return cli, parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    """The parsed flags and the checked :class:`TrainConfig` (defaults < preset < overrides)."""
    cli, parser = build_cli()
    args = parser.parse_args(argv)
    cfg = cli.config(args)
    check_train_config(cfg)
    return args, cfg


def setup_distributed() -> None:
    """Initialise torch.distributed for DeepSpeed; a plain ``python train/main.py`` runs as a
    single process (rank 0 of 1 on a free local port) instead of falling into MPI discovery."""
    if "RANK" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        )
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    # Our packages at INFO on rank 0 (WARNING on the others), libraries at WARNING, to stdout.
    setup_logging("INFO", rank=int(os.environ.get("RANK", "0")), stream=sys.stdout)
    try:
        args, cfg = parse_args(argv)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    setup_distributed()
    try:
        Trainer(cfg, resume=args.resume).fit()
    except (
        FileNotFoundError,
        WhereError,
        ConfigError,
        FormatVersionError,
        ModelFormatError,
    ) as exc:
        log.error("%s", exc)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        release_shm_buffer()
    return 0


def release_shm_buffer() -> None:
    """Remove this rank's segment of DeepSpeed's shared-memory all-reduce (CPU ranks on one
    machine), which DeepSpeed creates at start and never unlinks: 66 MB of RAM in
    ``/dev/shm`` per rank and run, kept until reboot (found here: 149 of them, 9.7 GB). Its
    name is DeepSpeed's (``ops/csrc/cpu/comm/shm.cpp``); the peers have mapped it already."""
    name = "deepspeed_allreduce_buffer_{}_{}_{}_{}".format(
        os.getuid(),
        os.environ.get("MASTER_ADDR", ""),
        os.environ.get("MASTER_PORT", ""),
        os.environ.get("RANK", ""),
    )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"/dev/shm/{name}")


if __name__ == "__main__":
    raise SystemExit(main())
