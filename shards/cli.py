"""``python -m shards stats|validate|select|show|browse``: inspect, see and curate an output.

OUT is a local folder or a URI (``s3://bucket/out``, through ``shards.storage``). Exit codes:
0 success; 1 ``validate`` found problems; 2 bad usage (not a preprocessing output, a
``--where`` expression DuckDB cannot evaluate, storage that cannot be read). Results go to
stdout, logs to stderr. ``show`` and ``browse`` are the data viewers (``shards.show``,
``shards.browse``); ``select --keys`` reads the keys files they and ``select --to`` write.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shards.browse import build_site
from shards.config import HelpFormatter
from shards.keys import MissingKeysError, format_keys, keys_in_table, read_keys
from shards.logs import setup_logging
from shards.reader import WhereError, filter_table, read_clips, read_videos
from shards.schema import SHARDS_DIR, VIDEOS_DIR
from shards.show import ShowOptions, show
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
        help="write the keys (and shards) of the clips matching --where and/or --keys",
        description="Select clips with a SQL expression and/or a keys file and write their "
        "keys and the shards holding them. FILE ending in .txt gets one key per line; any "
        "other name gets JSON {root, where, n_clips, shards: [paths], keys: [...]}.",
        formatter_class=HelpFormatter,
    )
    select.add_argument("output", metavar="OUT", help=OUTPUT_HELP)
    select.add_argument("--where", help=WHERE_HELP + "; with --keys, both must hold")
    select.add_argument("--keys", metavar="KEYS", help=KEYS_HELP)
    select.add_argument(
        "--to",
        required=True,
        metavar="FILE",
        help="file to write (.txt: keys, one per line; else JSON), written atomically",
    )
    add_show_parser(sub)
    add_browse_parser(sub)
    return parser


KEYS_HELP = (
    "keys file: one clip key per line (as written by 'select --to FILE.txt' and by the "
    "browser's export) or select's JSON; a key that is not a clip of OUT is an error"
)


def add_show_parser(sub: Any) -> None:
    show_cmd = sub.add_parser(
        "show",
        help="draw clips' conditions: a contact sheet PNG and an MP4 per clip",
        description="For each clip: a contact sheet (KEY.png) and a short MP4 (KEY.mp4) with, "
        "side by side per frame, the frame with the tracked skeletons (one colour per track), "
        "the union mask outline, the depth-order map coloured by rank and the flow (Middlebury "
        "colour wheel), plus a strip plot of the per-frame background flow, occlusion rate and "
        "character count. Clips: --key/--keys, and/or --where, at most --limit, in table "
        "order (neither: the first --limit clips). Only the shards holding them are read.",
        formatter_class=HelpFormatter,
    )
    show_cmd.add_argument("output", metavar="OUT", help=OUTPUT_HELP)
    show_cmd.add_argument(
        "--key", action="append", default=[], metavar="KEY", help="a clip key (repeatable)"
    )
    show_cmd.add_argument("--keys", metavar="KEYS", help=KEYS_HELP)
    show_cmd.add_argument("--where", help=WHERE_HELP)
    show_cmd.add_argument(
        "--limit",
        type=int,
        help="at most this many clips, in table order (0: all; default: every clip named by "
        "--key/--keys, else 4)",
    )
    show_cmd.add_argument(
        "--out",
        default="show",
        metavar="DIR",
        help="folder or URI (s3://...) to write KEY.png / KEY.mp4 to (default: %(default)s)",
    )
    defaults = ShowOptions()
    show_cmd.add_argument(
        "--height",
        type=int,
        default=defaults.height,
        help="panel height in pixels (default %(default)s)",
    )
    show_cmd.add_argument(
        "--rows",
        type=int,
        default=defaults.rows,
        help="frames in the contact sheet, evenly spaced (default %(default)s)",
    )
    show_cmd.add_argument(
        "--max-frames",
        type=int,
        default=defaults.max_frames,
        help="frames in the MP4, from the clip's start (0: all; default %(default)s)",
    )
    show_cmd.add_argument("--no-video", action="store_true", help="write the PNGs only")


def add_browse_parser(sub: Any) -> None:
    browse = sub.add_parser(
        "browse",
        help="write a static, offline HTML browser of OUT (open SITE/index.html)",
        description="Write a static HTML site (no server, no network; open index.html from "
        "file://) with one row per clip: thumbnail, video, every clips-table column; sorting, "
        "per-column range and text filters with the equivalent --where expression; export of "
        "the selected keys (for 'select --keys' and training's data.keys); the failed and "
        "skipped videos; the plots and summary of 'stats'. Previews are capped at --previews "
        "clips (the first of the table); only the shards holding them are read.",
        formatter_class=HelpFormatter,
    )
    browse.add_argument("output", metavar="OUT", help=OUTPUT_HELP)
    browse.add_argument(
        "--out", required=True, metavar="SITE_DIR", help="local folder to write the site to"
    )
    browse.add_argument(
        "--previews",
        type=int,
        default=200,
        help="clips (the first of the table) that get a thumbnail and their video; the "
        "others name the 'show' command that draws them (default %(default)s)",
    )
    browse.add_argument(
        "--sheets",
        type=int,
        default=0,
        help="clips (the first of the table) that also get show's contact sheet and "
        "conditions MP4 (seconds per clip; default %(default)s)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("DEBUG" if args.verbose else "INFO")
    commands = {
        "stats": run_stats,
        "validate": run_validate,
        "select": run_select,
        "show": run_show,
        "browse": run_browse,
    }
    try:
        if args.command != "validate":
            check_output(args.output)
        return commands[args.command](args)
    except (WhereError, NotADirectoryError, MissingKeysError, UsageError) as exc:
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


class UsageError(ValueError):
    """Options that do not go together."""


def run_select(args: argparse.Namespace) -> int:
    if not args.where and not args.keys:
        raise UsageError("select needs --where EXPR, --keys FILE or both")
    clips = read_clips(args.output)
    if args.keys:
        clips = keys_in_table(clips, read_keys(args.keys), args.keys)
    if args.where:
        clips = filter_table(clips, args.where, "clips")
    payload = selection(args.output, args.where, clips)
    if args.keys:
        payload["keys_file"] = args.keys
    target: str = args.to
    if target.endswith(".txt"):
        write_text(target, format_keys(payload["keys"]))
    else:
        write_text(target, json.dumps(payload, indent=1) + "\n")
    print(f"selected {payload['n_clips']} clips in {len(payload['shards'])} shards -> {target}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    keys = [*args.key, *(read_keys(args.keys) if args.keys else [])]
    options = ShowOptions(
        height=args.height, rows=args.rows, max_frames=args.max_frames, video=not args.no_video
    )
    written = show(
        args.output, args.out, keys=keys or None, where=args.where,
        limit=args.limit if args.limit is not None else 0 if keys else 4,
        options=options,
    )  # fmt: skip
    print("\n".join(written))
    return 0


def run_browse(args: argparse.Namespace) -> int:
    index = build_site(args.output, args.out, previews=args.previews, sheets=args.sheets)
    print(f"dataset browser: {index.resolve().as_uri()}")
    return 0


def selection(root: str, where: str | None, clips: pa.Table) -> dict[str, Any]:
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
