"""``python -m preprocess``: raw videos -> WebDataset shards + Parquet statistics.

    python -m preprocess --input VIDEOS_DIR --output OUT --config jobs/preprocess/cpu.yaml \\
        flow.preset=fast decode.max_fps=24

Runs the Ray job (``preprocess.ray_job``; a local Ray instance unless ``RAY_ADDRESS`` or
``run.address`` names a cluster, as under ``ray job submit``), or with ``run.runner=local``
the in-process run (``preprocess.pipeline``). Both write the same output.
"""

from __future__ import annotations

import argparse
import logging
import sys

from preprocess.config import PreprocessConfig
from preprocess.pipeline import ConfigMismatchError, RunSummary, run
from shards.config import ConfigError, load_config

log = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess",
        description=(
            "Turn raw videos into training data: decode into clips (no shot cuts inside), "
            "extract multi-person pose, optical flow and depth order, compute skeletal dilation "
            "masks, background flow and occlusion, and write WebDataset shards plus Parquet "
            "statistics under OUTPUT. Re-running on the same OUTPUT skips finished videos."
        ),
        epilog=(
            "Overrides are dotted config keys, e.g. flow.preset=fast pose.min_score=0.4 "
            "decode.max_frames=128 run.runner=local. Precedence: defaults < --config YAML < "
            "overrides. "
            "Inspect the result with: python -m shards stats OUTPUT"
        ),
    )
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="DIR|GLOB|LIST|FILE",
        help="videos to process: a directory (walked recursively), a glob, a .txt list of "
        "paths/URIs, or a file; repeatable",
    )
    parser.add_argument(
        "--output", required=True, help="output folder (shards/, stats/, config.yaml)"
    )
    parser.add_argument("--config", help="YAML preset, e.g. jobs/preprocess/cpu.yaml")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="add to an output written with a different config instead of refusing",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(PreprocessConfig, args.config, args.overrides)
        summary = dispatch(args.input, args.output, cfg, args.allow_config_change)
    except (ConfigError, ConfigMismatchError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(summary.format())
    return 0


def dispatch(
    inputs: list[str], output: str, cfg: PreprocessConfig, allow_config_change: bool
) -> RunSummary:
    """The configured runner (``run.runner``); Ray is imported only for the Ray job."""
    if cfg.run.runner == "local":
        return run(inputs, output, cfg, allow_config_change=allow_config_change)
    if cfg.run.runner == "ray":
        from preprocess.ray_job import run_ray

        return run_ray(inputs, output, cfg, allow_config_change=allow_config_change)
    raise ValueError(f"run.runner must be 'ray' or 'local', got {cfg.run.runner!r}")


if __name__ == "__main__":
    sys.exit(main())
