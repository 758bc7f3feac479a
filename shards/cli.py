"""``python -m shards stats|validate|select``: inspect and curate a preprocessing output.

OUT is a local folder or a URI (``s3://bucket/out``, through ``shards.storage``). Exit codes:
0 success; 1 ``validate`` found problems; 2 bad usage (not a preprocessing output, a
``--where`` expression DuckDB cannot evaluate, storage that cannot be read). Results go to
stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shards.config import HelpFormatter
from shards.logs import setup_logging
from shards.reader import WhereError, read_clips, read_videos
from shards.schema import SHARDS_DIR, VIDEOS_DIR
from shards.stats import format_summary, summarize, write_plots
from shards.storage import canonical, is_dir, uri_join, write_text
from shards.validate import validate

OUTPUT_HELP = "preprocessing output: a folder, or a URI such as s3://bucket/out"
WHERE_HELP = (
    "SQL boolean expression over the clips table's columns, evaluated with DuckDB, e.g. "
    '"bg_flow_mean < 20 and characters_max >= 1" (columns: docs/shards.md)'
)
EPILOG = (
    "Exit codes: 0 success; 1 validate found problems; 2 bad usage. s3:// outputs use the "
    "usual AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
    "AWS_DEFAULT_REGION). Run 'python -m shards COMMAND --help' for a command's options."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shards",
        description="Inspect, check and curate a preprocessing output "
        "(OUT/shards/*.tar + OUT/stats/{clips,videos}/*.parquet).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging (default: INFO)"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do with OUT:"
    )

    stats = sub.add_parser(
        "stats",
        help="paper-style statistics (background flow, characters, occlusion, failures)",
        description="Print the paper-style summary (Appendix A.1) of an output, with the "
        "paper's numbers alongside. With --where, clips are filtered and video statistics "
        "cover the videos of the selected clips.",
        formatter_class=HelpFormatter,
    )
    stats.add_argument("output", metavar="OUT", help=OUTPUT_HELP)
    stats.add_argument("--where", help=WHERE_HELP)
    stats.add_argument(
        "--plots",
        metavar="DIR",
        help="also write PNG histograms (bg_flow_mean.png, occlusion_rate.png, "
        "characters.png) to DIR, a folder or a URI",
    )
    stats.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of a table"
    )

    check = sub.add_parser(
        "validate",
        help="check every shard against its Parquet rows (exit 1 on any problem)",
        description="Decode every field of every sample and check it against its Parquet row "
        "(and its format version); check for orphan tars or Parquet files and for video rows "
        "that disagree with their clips; on a local output also for tmp and staging files "
        "left by interrupted writers. Exit 0 when everything agrees, 1 otherwise.",
        formatter_class=HelpFormatter,
    )
    check.add_argument("output", metavar="OUT", help=OUTPUT_HELP)

    select = sub.add_parser(
        "select",
        help="write the keys (and shards) of the clips matching --where",
        description="Select clips with a SQL expression and write their keys and the shards "
        "holding them. FILE ending in .txt gets one key per line; any other name gets JSON "
        "{root, where, n_clips, shards: [paths], keys: [...]}.",
        formatter_class=HelpFormatter,
    )
    select.add_argument("output", metavar="OUT", help=OUTPUT_HELP)
    select.add_argument("--where", required=True, help=WHERE_HELP)
    select.add_argument(
        "--to",
        required=True,
        metavar="FILE",
        help="file to write (.txt: keys, one per line; else JSON), written atomically",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("DEBUG" if args.verbose else "INFO")
    commands = {"stats": run_stats, "validate": run_validate, "select": run_select}
    try:
        if args.command != "validate":
            check_output(args.output)
        return commands[args.command](args)
    except (WhereError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # a URI pyarrow cannot open, storage errors
        print(f"error: {args.output}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def check_output(root: str) -> None:
    if not is_dir(uri_join(root, SHARDS_DIR)) and not is_dir(uri_join(root, VIDEOS_DIR)):
        raise NotADirectoryError(f"{root} is not a preprocessing output (no shards/ or stats/)")


def run_stats(args: argparse.Namespace) -> int:
    clips = read_clips(args.output, where=args.where)
    videos = read_videos(args.output)
    if args.where:
        videos = videos.filter(pc.is_in(videos["video_id"], clips["video_id"].unique()))
    summary = summarize(clips, videos)
    if args.json:
        print(json.dumps({"root": str(args.output), "where": args.where, **summary}, indent=2))
    else:
        header = f"{args.output}" + (f"  where {args.where}" if args.where else "")
        print(f"{header}\n{'=' * len(header)}\n{format_summary(summary)}")
    if args.plots:
        write_plots(clips, videos, args.plots)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    report = validate(args.output)
    print(report.format())
    return 0 if report.ok else 1


def run_select(args: argparse.Namespace) -> int:
    clips = read_clips(args.output, where=args.where, columns=["key", "shard"])
    payload = selection(args.output, args.where, clips)
    target: str = args.to
    if target.endswith(".txt"):
        write_text(target, "".join(f"{k}\n" for k in payload["keys"]))
    else:
        write_text(target, json.dumps(payload, indent=1) + "\n")
    print(f"selected {payload['n_clips']} clips in {len(payload['shards'])} shards -> {target}")
    return 0


def selection(root: str, where: str, clips: pa.Table) -> dict[str, Any]:
    """The JSON written by ``select``: shard paths (or URIs) in order of first appearance."""
    keys = clips["key"].to_pylist()
    names = list(dict.fromkeys(clips["shard"].to_pylist()))
    base = canonical(root)
    return {
        "root": base,
        "where": where,
        "n_clips": len(keys),
        "shards": [uri_join(base, SHARDS_DIR, n) for n in names],
        "keys": keys,
    }
