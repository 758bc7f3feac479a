"""One prepared GPU check: extraction, training and inference figures in under eight minutes.

    make gpu-wheels        # on a machine with network: pinned wheels into out/gpu_wheels (<= 40 MiB)
    make gpu-check         # on the GPU machine: unpack them into out/gpu_site, run this script
    PYTHONPATH=.:out/gpu_site python3 benchmarks/gpu_check.py --out out/gpu_check/gpu_check.json
    python3 benchmarks/gpu_check.py --dry-run      # tiny sizes on the CPU (the test suite runs it)

Written for a GPU machine without network that has torch, transformers, onnx, onnxruntime (CPU
provider only) and nvidia-ml-py but not diffusers, DeepSpeed, OmegaConf or onnx2torch (those
come from the wheels) nor Ray, decord, PyAV or WebDataset (nothing here imports them). What
each section measures and its time limit: ``SECTIONS`` below and docs/gpu.md, where the
figures go once measured. The sections run in child processes, one per group (extraction,
training, inference; one for all in a dry run), each section under its own limit (a clock it
checks, an alarm behind it) and each child under its group's limit (killed past it); a section
that would not fit in what is left of ``--total`` is skipped with that reason. So the run ends
by itself, and a section that fails, hangs or runs out of memory costs only its own figures.
Output: one table on stdout, the same as markdown and every figure as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpu_common import REPO, Clock, Section, SkipSection, dry_sizes, gpu_info

log = logging.getLogger("gpu_check")


@dataclass(frozen=True)
class Spec:
    name: str
    group: str
    budget_s: float
    what: str


SECTIONS = (
    Spec("extract.flow_pwcnet", "extract", 40, "PWC-Net (full size) pairs/s per batch 1/4/8/16"),
    Spec(
        "extract.depth_anything",
        "extract",
        60,
        "Depth Anything S/B/L network frames/s per batch (fp16), Small's whole backend",
    ),
    Spec("extract.pose_onnx2torch", "extract", 30, "ONNX pose models via onnx2torch on the GPU"),
    Spec("extract.pose_onnxruntime", "extract", 30, "the same via onnxruntime on the CPU cores"),
    Spec("extract.fused", "extract", 40, "FusedExtractors (or pose->flow->depth) on one clip"),
    Spec("train.stage1", "train", 95, "stage 1, batch 4 at 896x640: samples/s, memory, max batch"),
    Spec("train.stage2", "train", 85, "stage 2, 1 x 16 frames: samples/s, memory, max batch"),
    Spec("infer.cfg_step", "infer", 55, "CFG step of 16 frames, projected DDIM 50 for 64 frames"),
)
GROUPS = ("extract", "train", "infer")
STARTUP_S = 25.0
"""A child's allowance for starting (imports, CUDA context) on top of its sections' limits."""
ALARM_GRACE_S = 10.0
"""A section still running this long after its limit is interrupted (its clock stops it first)."""
DEFAULT_TOTAL_S = 450.0


def run_section(spec: Spec, args: argparse.Namespace, env: dict[str, Any]) -> Section:
    """One section in this (child) process, under its clock and an alarm."""
    import gpu_extract
    import gpu_infer
    import gpu_train

    sizes = replace(dry_sizes() if args.dry_run else gpu_sizes(), trainer=args.trainer)
    sec = Section(spec.name, spec.budget_s, spec.what)
    left = args.deadline - time.time()
    if left < spec.budget_s:
        sec.status, sec.reason = (
            "skipped",
            f"would not fit: needs {spec.budget_s:.0f} s, {left:.0f} s left of --total",
        )
        return sec
    if not args.dry_run and not cuda_available():
        sec.status, sec.reason = "skipped", "torch sees no CUDA GPU (use --dry-run on a CPU)"
        return sec
    if sizes.threads:
        import torch

        torch.set_num_threads(sizes.threads)
    clock = Clock(spec.budget_s)
    start = time.monotonic()

    def alarm(_signum: int, _frame: object) -> None:
        raise TimeoutError(
            f"stopped at its time limit ({spec.budget_s:.0f} s + {ALARM_GRACE_S:.0f} s)"
        )

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, spec.budget_s + ALARM_GRACE_S)
    try:
        if spec.group == "extract":
            if "frames" not in env:
                env.update(extract_env(args, sizes))
            fn = getattr(gpu_extract, spec.name.split(".", 1)[1])
            fn(sec, sizes, clock, gpu_extract.Env(**env))
        elif spec.group == "train":
            gpu_train.stage(sec, sizes, clock, int(spec.name[-1]))
        else:
            gpu_infer.cfg_step(sec, sizes, clock)
        measured = [r for r in sec.rows if r.value is not None]
        failed = [r for r in sec.rows if r.value is None and not r.note.startswith("skipped:")]
        sec.status = "ok" if measured and not failed else "partial" if measured else "failed"
        if failed:
            sec.reason = "; ".join(f"{r.item}: {r.note}" for r in failed)[:400]
    except SkipSection as exc:
        sec.status, sec.reason = "skipped", str(exc)
    except Exception as exc:  # TimeoutError (the alarm) included
        log.error("%s failed:\n%s", spec.name, traceback.format_exc())
        hint = " (make gpu-wheels, docs/gpu.md)" if isinstance(exc, ModuleNotFoundError) else ""
        sec.status = "partial" if any(r.value is not None for r in sec.rows) else "failed"
        sec.reason = f"{type(exc).__name__}: {exc}{hint}"[:400]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sec.wall_s = round(time.monotonic() - start, 1)
    return sec


def gpu_sizes() -> Any:
    from gpu_common import Sizes

    return Sizes()


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def extract_env(args: argparse.Namespace, sizes: Any) -> dict[str, Any]:
    import gpu_extract

    from preprocess.weights import assets_dir

    assets = Path(args.assets) if args.assets else assets_dir()
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    frames, source = gpu_extract.load_frames(assets, sizes.short_side, max(sizes.batches) + 1)
    log.info("frames: %s at %dx%d, assets %s", source, frames.shape[2], frames.shape[1], assets)
    return {"tmp": tmp, "assets": assets, "frames": frames, "source": source}


def child(args: argparse.Namespace) -> int:
    """Run the sections of ``args.child`` (a group, or ``all``), saving after each."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = Path(args.state)
    done: dict[str, Any] = {}
    env: dict[str, Any] = {}
    saved: dict[str, Any] = {"machine": gpu_info(), "sections": done}

    def save() -> None:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved))
        tmp.replace(state)

    save()
    try:
        for spec in plan(args):
            if args.child not in ("all", spec.group):
                continue
            log.info("section %s (limit %.0f s)", spec.name, spec.budget_s)
            try:
                sec = run_section(spec, args, env)
            except TimeoutError as exc:  # the alarm, after the section's own handler
                sec = Section(spec.name, spec.budget_s, spec.what, "failed", str(exc))
            log.info("section %s: %s %s (%.1f s)", spec.name, sec.status, sec.reason, sec.wall_s)
            done[spec.name] = sec.to_dict()
            if "source" in env:
                done[spec.name]["frames"] = env["source"]
            save()
    finally:
        if "tmp" in env:  # the random weights written for the backends
            shutil.rmtree(env["tmp"], ignore_errors=True)
    return 0


def plan(args: argparse.Namespace) -> list[Spec]:
    """The sections with ``--budget`` overrides, those of ``--only`` (default: all)."""
    budgets = dict(b.split("=", 1) for b in args.budget)
    names = {s.name for s in SECTIONS}
    unknown = sorted((set(budgets) | set(args.only)) - names)
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; sections: {sorted(names)}")
    return [
        replace(s, budget_s=float(budgets.get(s.name, s.budget_s)))
        for s in SECTIONS
        if not args.only or s.name in args.only
    ]


def run_group(
    group: str, specs: list[Spec], args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    """The sections of ``group`` in a child process, killed at the group's limit."""
    left = deadline - time.time()
    limit = min(sum(s.budget_s for s in specs) + STARTUP_S, left + 5)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            group,
            "--state",
            str(state),
        ]
        cmd += ["--deadline", str(deadline), *args.passthrough]
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            code: int | str = proc.wait(timeout=max(limit, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = f"killed at the group limit ({limit:.0f} s)"
        saved = json.loads(state.read_text()) if state.is_file() else {}
    done: dict[str, Any] = saved.get("sections", {})
    if saved.get("machine"):
        done["_machine"] = saved["machine"]
    for spec in specs:
        if spec.name not in done:
            sec = Section(spec.name, spec.budget_s, spec.what, status="failed")
            sec.reason = f"the {group} process ended before this section reported (exit: {code})"
            done[spec.name] = sec.to_dict()
    return done


def table(result: dict[str, Any]) -> str:
    """The markdown table of every row (and every section without rows)."""

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        "| section | item | batch | device | value | unit | GPU busy | peak GiB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sec in result["sections"].items():
        if not sec["rows"]:
            lines.append(f"| {name} | {sec['status']} | | | | | | | {sec['reason']} |")
        for r in sec["rows"]:
            lines.append(
                f"| {name} | {r['item']} | {r['batch']} | {r['device']} | {num(r['value'], '.3g')} "
                f"| {r['unit']} | {num(r['busy'], '.0%')} | {num(r['peak_gib'], '.1f')} | {r['note']} |"
            )
        if sec["rows"] and sec["status"] != "ok":
            lines.append(f"| {name} | ({sec['status']}) | | | | | | | {sec['reason']} |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Sections and limits: "
        + "; ".join(f"{s.name} {s.budget_s:.0f} s ({s.what})" for s in SECTIONS),
    )
    parser.add_argument(
        "--out",
        default="",
        help="JSON file to write (default out/gpu_check/gpu_check.json, dry run: "
        "out/gpu_check/dry_run.json); the table goes next to it as .md",
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, seconds")
    parser.add_argument(
        "--total",
        type=float,
        default=DEFAULT_TOTAL_S,
        help=f"seconds the whole check may take (default {DEFAULT_TOTAL_S:.0f}); a section "
        "that would not fit in what is left is skipped with that reason",
    )
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="SECTION=SECONDS",
        help="change a section's time limit (repeatable)",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="SECTION", help="run only these sections"
    )
    parser.add_argument(
        "--assets",
        default="",
        help="assets folder with videos/vtest.avi and models/*.onnx (default $MCANIM_ASSETS or "
        "../shared/assets); without it frames are synthetic and the pose sections skipped",
    )
    parser.add_argument(
        "--trainer",
        choices=("auto", "deepspeed", "plain"),
        default="auto",
        help="training runtime: DeepSpeed ZeRO-2 bf16 (auto: when it imports, else plain) or "
        "plain bf16 autocast + AdamW",
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--state", default="", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.passthrough = [*(["--dry-run"] if args.dry_run else []), "--assets", args.assets]
    args.passthrough += ["--trainer", args.trainer]
    args.passthrough += [x for b in args.budget for x in ("--budget", b)]
    args.passthrough += [x for o in args.only for x in ("--only", o)]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return child(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.time()
    deadline = started + args.total
    specs = plan(args)
    groups = ("all",) if args.dry_run else GROUPS
    sections: dict[str, Any] = {}
    for group in groups:
        members = [s for s in specs if group in ("all", s.group)]
        if members:
            sections.update(run_group(group, members, args, deadline))
    result = {
        "dry_run": args.dry_run,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "total_s": args.total,
        "wall_s": round(time.time() - started, 1),
        "machine": sections.pop("_machine", {}),
        "sections": {s.name: sections[s.name] for s in specs},
    }
    default = "dry_run.json" if args.dry_run else "gpu_check.json"
    out = Path(args.out or REPO / "out" / "gpu_check" / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    text = table(result)
    out.with_suffix(".md").write_text(
        f"GPU check {result['date']} on {result['machine'].get('gpu') or 'CPU'}"
        f"{' (dry run)' if args.dry_run else ''}, {result['wall_s']} s\n\n{text}\n"
    )
    print(text)
    print(f"\n{result['wall_s']} s; figures in {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
