"""``python -m preprocess``: raw videos -> WebDataset shards + Parquet statistics.

    python -m preprocess --input VIDEOS_DIR --output OUT --config jobs/preprocess/cpu.yaml \\
        flow.preset=fast decode.max_fps=24

Runs the Ray job (``preprocess.ray_job``; a local Ray instance unless ``RAY_ADDRESS`` or
``run.address`` names a cluster, as under ``ray job submit``), or with ``run.runner=local``
the in-process run (``preprocess.pipeline``). Both write the same output; ``--help`` lists
every option and every config key (``preprocess/config.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from preprocess.config import PreprocessConfig
from preprocess.pipeline import run
from preprocess.runner import ConfigMismatchError, RunSummary
from shards.config import ConfigCLI, ConfigError
from shards.logs import setup_logging

log = logging.getLogger("preprocess")

DESCRIPTION = (
    "Turn raw videos into training data: decode into clips (no shot cuts inside), extract "
    "multi-person pose, optical flow and depth order, compute skeletal dilation masks, "
    "background flow and occlusion, and write WebDataset shards plus Parquet statistics under "
    "OUTPUT. Re-running on the same OUTPUT skips finished videos."
)
EPILOG = (
    "Precedence: defaults < --config YAML < KEY=VALUE overrides, e.g. flow.preset=fast "
    "pose.min_score=0.4 decode.max_frames=128 run.runner=local. Inputs and outputs may be "
    "s3:// URIs (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
    "AWS_DEFAULT_REGION). Exit codes: 0 done (failed videos are rows of the output, not "
    "errors); 2 bad usage, config or output. Inspect the result with: "
    "python -m shards stats OUTPUT"
)


def build_parser() -> tuple[ConfigCLI[PreprocessConfig], argparse.ArgumentParser]:
    cli = ConfigCLI(PreprocessConfig)
    parser = cli.parser("python -m preprocess", DESCRIPTION, epilog=EPILOG)
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="DIR|GLOB|LIST|FILE|URI",
        help="videos to process: a directory (walked recursively), a glob, a .txt list of "
        "paths/URIs, a file, or an s3:// object or prefix; repeatable",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="OUT|URI",
        help="output folder or s3:// prefix (shards/, stats/, config.yaml, backends.json)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="add to an output written with a different config or other model weights "
        "instead of refusing (an output of another format version is refused always)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help="logging level: DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    return cli, parser


def main(argv: list[str] | None = None) -> int:
    cli, parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))  # exits 2
    try:
        cfg = cli.config(args)
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
