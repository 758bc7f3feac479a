"""``python -m shards stats|validate|select``: inspect and curate a preprocessing output.

Exit codes: 0 success; 1 ``validate`` found problems; 2 bad usage (unknown output folder,
a ``--where`` expression DuckDB cannot evaluate). Results go to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shards.reader import WhereError, read_clips, read_videos
from shards.schema import SHARDS_DIR, VIDEOS_DIR
from shards.stats import format_summary, summarize, write_plots
from shards.validate import validate

WHERE_HELP = (
    "SQL boolean expression over the clips table's columns, evaluated with DuckDB, e.g. "
    '"bg_flow_mean < 20 and characters_max >= 1" (columns: docs/shards.md)'
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shards",
        description="Inspect, check and curate a preprocessing output "
        "(OUT/shards/*.tar + OUT/stats/{clips,videos}/*.parquet).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stats = sub.add_parser(
        "stats",
        help="paper-style statistics (background flow, characters, occlusion, failures)",
        description="Print the paper-style summary (Appendix A.1) of an output, with the "
        "paper's numbers alongside. With --where, clips are filtered and video statistics "
        "cover the videos of the selected clips.",
    )
    stats.add_argument("output", type=Path, help="preprocessing output folder")
    stats.add_argument("--where", help=WHERE_HELP)
    stats.add_argument("--plots", type=Path, metavar="DIR", help="also write PNG plots to DIR")
    stats.add_argument("--json", action="store_true", help="print the summary as JSON")

    check = sub.add_parser(
        "validate",
        help="check every shard against its Parquet rows (exit 1 on any problem)",
        description="Decode every field of every sample and check it against its Parquet row; "
        "check for orphan or tmp files and for video rows that disagree with their clips. "
        "Exit 0 when everything agrees, 1 otherwise.",
    )
    check.add_argument("output", type=Path, help="preprocessing output folder")

    select = sub.add_parser(
        "select",
        help="write the keys (and shards) of the clips matching --where",
        description="Select clips with a SQL expression and write their keys and the shards "
        "holding them. FILE ending in .txt gets one key per line; any other name gets JSON "
        "{root, where, n_clips, shards: [paths], keys: [...]}.",
    )
    select.add_argument("output", type=Path, help="preprocessing output folder")
    select.add_argument("--where", required=True, help=WHERE_HELP)
    select.add_argument("--to", required=True, type=Path, metavar="FILE", help="output file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    commands = {"stats": run_stats, "validate": run_validate, "select": run_select}
    try:
        if args.command != "validate":
            check_output(args.output)
        return commands[args.command](args)
    except (WhereError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def check_output(root: Path) -> None:
    if not (root / SHARDS_DIR).is_dir() and not (root / VIDEOS_DIR).is_dir():
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
    target: Path = args.to
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".txt":
        target.write_text("".join(f"{k}\n" for k in payload["keys"]))
    else:
        target.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"selected {payload['n_clips']} clips in {len(payload['shards'])} shards -> {target}")
    return 0


def selection(root: Path, where: str, clips: pa.Table) -> dict[str, Any]:
    """The JSON written by ``select``: shard paths in order of first appearance."""
    keys = clips["key"].to_pylist()
    names = list(dict.fromkeys(clips["shard"].to_pylist()))
    base = root.resolve() / SHARDS_DIR
    return {
        "root": str(root.resolve()),
        "where": where,
        "n_clips": len(keys),
        "shards": [str(base / n) for n in names],
        "keys": keys,
    }
