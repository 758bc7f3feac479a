"""make mutate: mutation testing of the geometry layer, the extractors' pre/post-processing and
the metrics with mutmut (docs/testing.md). Not part of make test or CI: it takes hours on 2 cores.

The scope is pyproject.toml ``[tool.mutmut]``: ``only_mutate`` (the files mutated) and
``pytest_add_cli_args_test_selection`` (the fast unit tests run against each mutant; mutmut runs
only those that reach the mutated function). This script checks that scope, starts mutmut from
a clean ``mutants/`` folder (its working copy, ignored by git), then reads mutmut's result files
and writes per module the mutants, killed, survived and score, with every survivor located as
``file:line`` and its changed line, to ``out/mutation/report.md`` and ``results.json``.

    python benchmarks/mutation.py                  # the whole run, then the report
    python benchmarks/mutation.py --sample 3       # a fixed third of the mutants (compare runs at one K)
    python benchmarks/mutation.py --report-only    # the report of the last run (mutants/ kept)
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

log = logging.getLogger("mutate")

ROOT = Path(__file__).resolve().parents[1]
SCOPE_TESTS = (
    "tests/preprocess/geometry/test_*.py",
    "tests/preprocess/test_*pose*.py",
    "tests/preprocess/test_*yolox*.py",
    "tests/preprocess/test_*pwcnet*.py",
    "tests/preprocess/test_*depth_anything*.py",
    "tests/model/test_*metric*.py",
    "tests/model/test_*parity*.py",
    "tests/preprocess/test_*parity*.py",
)
"""Test files of the mutated areas: each must be in the mutmut test selection (a new parity
test left out would make the score lie low)."""
DETECTED = ("killed", "timeout", "segfault")
"""Verdicts that count as a detected mutant (a crash or a hang fails a test run too)."""
COLUMNS = ("killed", "timeout", "segfault", "survived", "no tests", "suspicious", "skipped")


@dataclass
class Survivor:
    name: str
    status: str
    file: str
    line: int
    function: str
    before: str
    after: str


def read_scope(pyproject: Path) -> dict[str, Any]:
    """``[tool.mutmut]`` of pyproject.toml, with the keys this script relies on checked."""
    config = tomllib.loads(pyproject.read_text()).get("tool", {}).get("mutmut")
    if not config:
        raise SystemExit(f"{pyproject}: no [tool.mutmut] section (see docs/testing.md)")
    for key in ("source_paths", "only_mutate", "pytest_add_cli_args_test_selection"):
        if not config.get(key):
            raise SystemExit(f"{pyproject}: [tool.mutmut] {key} is missing or empty")
    return config


def check_scope(config: dict[str, Any], root: Path) -> None:
    """Every mutated-file pattern matches a file and every test file of the areas is run."""
    sources = [
        p.relative_to(root).as_posix()
        for src in config["source_paths"]
        for p in sorted((root / src).rglob("*.py"))
    ]
    problems = [
        f"only_mutate pattern {pattern!r} matches no file (renamed or moved?)"
        for pattern in config["only_mutate"]
        if not any(fnmatch(s, pattern) for s in sources)
    ]
    selection = [s.rstrip("/") for s in config["pytest_add_cli_args_test_selection"]]
    problems += [
        f"test selection entry {s!r} does not exist" for s in selection if not (root / s).exists()
    ]
    for pattern in SCOPE_TESTS:
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).as_posix()
            if not any(rel == s or rel.startswith(s + "/") for s in selection):
                problems.append(
                    f"{rel} is a test of the mutated areas but not in the mutmut test selection"
                )
    if problems:
        raise SystemExit(
            "mutation scope out of date; fix pyproject.toml [tool.mutmut]:\n  - "
            + "\n  - ".join(problems)
        )


GENERATE = """
from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants
from mutmut.mutation.trampoline import set_mutant_under_test
from mutmut.utils.file_utils import setup_source_paths

set_mutant_under_test("mutant_generation")
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
create_mutants(1)
"""
"""The generation phase of ``mutmut run`` (3.8), alone: it writes every mutant's name."""


def sampled(name: str, sample: int) -> bool:
    """The fixed 1-in-``sample`` subset: by a hash of the mutant's name (module, function and
    number within it), so two runs agree except in functions whose code changed."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % sample == 0


def sample_names(config: dict[str, Any], sample: int, log_path: Path) -> list[str]:
    """Generate the mutants (no test run) and return the sampled ones not judged yet."""
    with log_path.open("w") as out:
        code = subprocess.call(
            [sys.executable, "-c", GENERATE], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    if code != 0:
        raise SystemExit(f"mutant generation failed (exit {code}); see {log_path}")
    names = []
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        path = meta.relative_to(ROOT / "mutants").as_posix().removesuffix(".meta")
        if any(fnmatch(path, p) for p in config["only_mutate"]):
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            names += [n for n, c in codes.items() if c is None and sampled(n, sample)]
    return names


def run_mutmut(jobs: int | None, log_path: Path, names: list[str] | None = None) -> float:
    """``mutmut run`` (of ``names`` only, if given) from the repository root; its (spinner)
    output goes to ``log_path``."""
    env = dict(os.environ)
    # mutmut forks one worker per mutant from a process that has run torch: a single
    # OpenMP/MKL thread keeps that fork safe (and one core per worker is the point anyway).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    # The packages run from mutants/, so their default assets path (beside the repository)
    # would point inside it: give the tests the real one, as the Makefile does.
    env.setdefault("MCANIM_ASSETS", str(ROOT.parent / "shared" / "assets"))
    command = [sys.executable, "-m", "mutmut", "run"]
    if jobs:
        command += ["--max-children", str(jobs)]
    log.info("%s (log: %s)", " ".join(command), log_path)
    if names:
        command += names
        log.info("%d sampled mutants to test", len(names))
    start = time.monotonic()
    with log_path.open("w") as out:
        code = subprocess.call(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - start
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(
            f"mutmut run failed (exit {code}) after {elapsed:.0f} s; end of {log_path}:\n{tail}"
        )
    return elapsed


def statuses(config: dict[str, Any], sample: int) -> dict[str, dict[str, str]]:
    """Mutated file -> {mutant name: verdict} of the sampled mutants, from mutmut's
    ``mutants/<file>.meta``."""
    from mutmut.stats import status_by_exit_code

    result: dict[str, dict[str, str]] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        path = meta.relative_to(ROOT / "mutants").as_posix().removesuffix(".meta")
        if not any(fnmatch(path, p) for p in config["only_mutate"]):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            result[path] = {
                name: status_by_exit_code[code]
                for name, code in codes.items()
                if sampled(name, sample)
            }
    if not result:
        raise SystemExit(f"no mutmut results under {ROOT / 'mutants'}: run without --report-only")
    return result


def locate(name: str, path: str) -> Survivor:
    """The file line a mutant changes, from mutmut's per-function diff."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=path).splitlines()
    hunk = next((i for i, line in enumerate(diff) if line.startswith("@@")), len(diff))
    body = [line for line in diff[hunk + 1 :] if not line.startswith("@@")]
    old = [line[1:] for line in body if line[:1] in (" ", "-")]
    first_minus = next((k for k, line in enumerate(body) if line.startswith("-")), 0)
    old_index = sum(1 for line in body[:first_minus] if line[:1] == " ")
    before = next((line[1:].strip() for line in body if line.startswith("-")), "")
    after = next((line[1:].strip() for line in body if line.startswith("+")), "")
    source = (ROOT / path).read_text().splitlines()
    mangled = re.sub(r"__mutmut_\d+$", "", name.rsplit(".", 1)[-1])  # x_f or xǁClassǁmethod
    function = mangled[2:] if mangled.startswith("x_") else mangled[1:].strip("ǁ").replace("ǁ", ".")
    start, end = function_span(ROOT / path, function)
    line = 0
    for first in range(max(start - 10, 0), min(end, len(source))):
        window = source[first : first + len(old)]
        if [s.strip() for s in window] == [s.strip() for s in old]:
            line = first + 1 + old_index
            break
    return Survivor(name, "", path, line, function, before, after)


def function_span(path: Path, dotted: str) -> tuple[int, int]:
    """(first, last) 1-based lines of a top-level function or ``Class.method``."""
    nodes: list[ast.stmt] = ast.parse(path.read_text()).body
    span = (1, 10**9)
    for part in dotted.split("."):
        found = next(
            (n for n in nodes if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part),
            None,
        )
        if found is None:
            return span
        span = (found.lineno, found.end_lineno or found.lineno)
        nodes = found.body
    return span


def summarise(results: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per file: mutants, each verdict's count, score = detected / (mutants - skipped)."""
    table: dict[str, dict[str, Any]] = {}
    total: Counter[str] = Counter()
    for path, verdicts in results.items():
        counts = Counter(verdicts.values())
        total.update(counts)
        table[path] = row(counts)
    table["TOTAL"] = row(total)
    return table


def row(counts: Counter[str]) -> dict[str, Any]:
    judged = sum(counts.values()) - counts["skipped"]
    detected = sum(counts[s] for s in DETECTED)
    return {
        "mutants": sum(counts.values()),
        **{c: counts[c] for c in COLUMNS},
        "not checked": counts["not checked"],
        "score": round(100.0 * detected / judged, 1) if judged else None,
    }


def markdown_table(table: dict[str, dict[str, Any]]) -> list[str]:
    head = ["file", "mutants", *COLUMNS, "score %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path, r in table.items():
        cells = [path, r["mutants"], *(r[c] for c in COLUMNS), r["score"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def write_report(
    out: Path, table: dict[str, dict[str, Any]], survivors: list[Survivor], meta: dict[str, Any]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Mutation testing report (make mutate, docs/testing.md)",
        "",
        f"commit {meta['commit']}, mutmut {meta['mutmut']}, run time {meta['run_time']}, "
        f"mutants sampled: {meta['sample']}",
        "",
        "score = (killed + timeout + segfault) / (mutants - skipped); 'no tests' = no selected "
        "test reaches the function.",
        "",
        *markdown_table(table),
        "",
        "## Survivors ('survived' and 'no tests'): file:line, function, the changed line",
    ]
    for s in survivors:
        lines += [
            "",
            f"- `{s.file}:{s.line}` {s.function} ({s.status}; `mutmut show {s.name}`)",
            f"  - `- {s.before}`",
            f"  - `+ {s.after}`",
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    payload = {**meta, "modules": table, "survivors": [asdict(s) for s in survivors]}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="mutants tested at once (mutmut --max-children); default: the number of CPUs",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=1,
        metavar="K",
        help="test and report a fixed 1-in-K subset of the mutants (chosen by a hash of each "
        "mutant's name; default 1: all). Compare two runs only at the same K",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep mutants/ and its verdicts, testing only the mutants not yet judged (after an "
        "interrupted run of the same code and tests; a stale verdict is otherwise kept)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the report of the results already in mutants/",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "out" / "mutation",
        help="folder of report.md, results.json and mutmut.log (default: out/mutation)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.chdir(ROOT)  # mutmut reads pyproject.toml and writes mutants/ in the working directory
    config = read_scope(ROOT / "pyproject.toml")
    check_scope(config, ROOT)
    args.out.mkdir(parents=True, exist_ok=True)
    run_time = "not measured (--report-only)"
    if not args.report_only:
        if not args.resume and (ROOT / "mutants").exists():
            log.info("removing the previous run's mutants/ (its verdicts would be kept)")
            shutil.rmtree(ROOT / "mutants")
        names = None
        if args.sample > 1:
            names = sample_names(config, args.sample, args.out / "generate.log")
        if names == []:
            log.info("every sampled mutant is judged already")
            run_time = "0 (nothing left to test)"
        else:
            elapsed = run_mutmut(args.jobs, args.out / "mutmut.log", names)
            run_time = f"{elapsed / 60:.1f} min ({args.jobs or os.cpu_count()} workers)"
    results = statuses(config, args.sample)
    survivors = []
    for path, verdicts in results.items():
        for name, status in sorted(verdicts.items()):
            if status in ("survived", "no tests"):
                survivor = locate(name, path)
                survivor.status = status
                survivors.append(survivor)
    survivors.sort(key=lambda s: (s.file, s.line, int(s.name.rpartition("_")[2])))
    from importlib.metadata import version

    meta = {
        "commit": git_commit(),
        "mutmut": version("mutmut"),
        "run_time": run_time,
        "sample": f"1 in {args.sample}",
    }
    table = summarise(results)
    write_report(args.out, table, survivors, meta)
    print("\n".join(markdown_table(table)))
    unchecked = table["TOTAL"]["not checked"]
    if unchecked:
        log.warning("%d mutants not checked yet: the run was interrupted (--resume)", unchecked)
    log.info("%d survivors listed in %s", len(survivors), args.out / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
