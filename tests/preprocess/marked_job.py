"""``python -m tests.preprocess.marked_job --marks DIR --stage NAME [--hold V:I] -- ARGS``:
``python -m preprocess ARGS`` with stage NAME of the stage table marked
(``ray_helpers.with_marks``), for the tests that kill a real job process.

The marks (``KEY.PID.start`` / ``KEY.PID.done`` in DIR) tell the test which clips this run
processed; ``--hold VIDEO_FILE_NAME:CLIP_INDEX`` keeps that clip in flight (``DIR/held``)
until the job is killed. The Ray workers of the job's local instance get the marked table
from the driver (they import this package: the job runs from the repository root).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preprocess import stages
from preprocess.__main__ import main as preprocess_main
from tests.preprocess.ray_helpers import with_marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.preprocess.marked_job")
    parser.add_argument("--marks", required=True, type=Path, help="folder of the marks")
    parser.add_argument("--stage", required=True, help="stage of the table to mark")
    parser.add_argument("--hold", default="", help="VIDEO_FILE_NAME:CLIP_INDEX to hold")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- python -m preprocess args")
    args = parser.parse_args(argv)
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    stages.STAGES = with_marks(stages.STAGES, args.stage, args.marks, args.hold)
    return preprocess_main(rest)


if __name__ == "__main__":
    sys.exit(main())
