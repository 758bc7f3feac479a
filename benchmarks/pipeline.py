"""Pipeline efficiency of the Ray job and of the in-process run, and memory per Ray worker.

    .venv/bin/python benchmarks/pipeline.py [--video PATH] [--frames 256] [--cpus 2]
        [--long-frames 0] [KEY=VALUE ...]

1. Each stage alone (decode, then every stage of ``preprocess.stages.STAGES``) over the same
   clips, one after another in this process, built as both runners build them: frames/s,
   measured before and after the end-to-end runs, the better of the two counting.
2. End to end on the same input (``decode.max_frames=--frames``): the Ray job on a local Ray
   instance (started beforehand, so its ~10 s start-up is not counted; actor start-up and
   model loading are), and the in-process run. Efficiency = end-to-end frames/s ÷ the
   slowest stage's frames/s alone (target >= 0.8 for the Ray job).
3. Memory: the Ray job on a long video (the whole of ``--video`` unless ``--long-frames``),
   sampling the unique memory (USS) of every Ray worker process; prints the peak per worker
   (RSS would also count the shared object store pages a worker has touched).

Everything runs pinned to ``--cpus`` cores (``sched_setaffinity``; Ray's processes inherit
it). The Ray instance gets enough *logical* CPUs for every actor plus one task of each kind
(``preprocess.ray_job.cpus_needed``) and the OS shares the real cores among them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil  # a Ray dependency
import ray

from preprocess.config import PreprocessConfig
from preprocess.decode import iter_clips, probe_video
from preprocess.pipeline import run
from preprocess.ray_job import cpus_needed, local_mode, run_ray
from preprocess.runner import backend_identities, build_steps, load_models
from preprocess.stages import DECODE, run_stage
from preprocess.weights import assets_dir
from shards.config import config_to_dict, load_config
from shards.logs import setup_logging

REPO = Path(__file__).resolve().parents[1]


def stages_alone(video: str, cfg: PreprocessConfig) -> tuple[int, dict[str, float]]:
    """(frames, frames/s of each stage of the table run alone over the same clips)."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    clips = list(iter_clips(probe_video(video, cfg.decode), cfg.decode))
    seconds[DECODE] = time.perf_counter() - start
    frames = sum(c.n_frames for c in clips)
    models = load_models(cfg)
    run_meta = {"config": config_to_dict(cfg), "backends": backend_identities(models)}
    for stage, fn in build_steps(cfg, run_meta, models):
        start = time.perf_counter()
        clips = [run_stage(stage, fn, c, None, 0.0) for c in clips]
        seconds[stage.name] = time.perf_counter() - start
    return frames, {n: frames / s if s > 1e-3 else float("inf") for n, s in seconds.items()}


class WorkerMemory:
    """Peak resident memory of every Ray worker process below this one, sampled in a thread.

    USS is read from ``/proc/PID/smaps``, which the kernel builds by walking the process's page
    tables, Ray's shared object store included: on 2 cores, sampling ~15 workers every 0.2 s
    took ~18 CPU-s of system time in a 75 s run, a quarter of a core taken from the job it
    measures. Hence a sample per second, and ``cpu_s``, the sampler's own CPU time, for the
    caller to leave out of the driver's."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.peak: dict[int, int] = defaultdict(int)
        """Peak unique memory (USS: pages of this process alone, not the shared object
        store that Ray maps into every worker) per pid."""
        self.names: dict[int, set[str]] = defaultdict(set)
        """What each worker ran (task workers are reused across operators)."""
        self.driver_peak = 0
        self.cpu_s = 0.0
        """CPU-seconds the sampling thread used."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self, every_s: float) -> None:
        me = psutil.Process()
        start = time.thread_time()
        while not self._stop.wait(every_s):
            self.driver_peak = max(self.driver_peak, me.memory_full_info().uss)
            for proc in me.children(recursive=True):
                try:
                    name, uss = proc.name(), proc.memory_full_info().uss
                    title = " ".join(proc.cmdline()[:1])
                except psutil.Error:
                    continue
                if title.startswith("ray::") or name.startswith("ray::"):
                    label = title if title.startswith("ray::") else name
                    self.peak[proc.pid] = max(self.peak[proc.pid], uss)
                    if "IDLE" not in label:
                        self.names[proc.pid].add(label.removeprefix("ray::"))
            self.cpu_s = time.thread_time() - start


def end_to_end(runner: str, video: str, cfg: PreprocessConfig) -> tuple[int, float, str]:
    """(frames, wall seconds, per-stage frames/s line of the run's summary) of one run."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = (run_ray if runner == "ray" else run)([video], out, cfg)
        wall = time.perf_counter() - start
    assert summary.status.get("ok") == 1, summary.format()
    return summary.frames, wall, summary.format().splitlines()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video",
        default=str(assets_dir() / "videos" / "vtest.avi"),
        help="input video (default: vtest.avi of $MCANIM_ASSETS)",
    )
    parser.add_argument("--frames", type=int, default=256, help="stored frames, efficiency runs")
    parser.add_argument("--long-frames", type=int, default=0, help="memory run (0: whole video)")
    parser.add_argument("--cpus", type=int, default=2, help="cores to pin everything to")
    parser.add_argument(
        "--config",
        default=str(REPO / "jobs" / "preprocess" / "cpu.yaml"),
        help="preprocessing preset (default jobs/preprocess/cpu.yaml)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    setup_logging("WARNING")
    cores = sorted(os.sched_getaffinity(0))[: args.cpus]
    os.sched_setaffinity(0, cores)
    video = str(Path(args.video).resolve())
    cfg = load_config(
        PreprocessConfig,
        args.config,
        [f"decode.max_frames={args.frames}", f"pose.threads={len(cores)}", *args.overrides],
    )
    frames, before = stages_alone(video, cfg)
    print(f"input: {video}, {frames} frames; pinned to cores {cores}")
    needed = cpus_needed(cfg.run, mode=local_mode(cfg.run))
    ray.init(num_cpus=max(len(cores), round(needed + 0.5)), include_dashboard=False)
    try:
        results = {runner: end_to_end(runner, video, cfg) for runner in ("ray", "local")}
        # Measured again after the runs; the best of the two counts, so that load from other
        # processes during one measurement cannot flatter the efficiency.
        _, after = stages_alone(video, cfg)
        alone = {n: max(before[n], after[n]) for n in before}
        slowest = min(alone, key=lambda n: alone[n])
        print(f"{'stage alone':<14}{'before':>10}{'after':>10}{'frames/s':>10}")
        for name, rate in alone.items():
            print(f"{name:<14}{before[name]:>10.1f}{after[name]:>10.1f}{rate:>10.1f}")
        print(f"slowest stage: {slowest} at {alone[slowest]:.1f} frames/s")
        # Each stage alone has every pinned core; sharing them, no runner can beat the sum of
        # the stages' times per frame. Efficiency above this bound needs more cores than stages.
        bound = 1.0 / sum(1.0 / r for r in alone.values() if math.isfinite(r) and r > 0)
        print(
            f"bound for any runner on these cores (sum of the stages' times): {bound:.1f} "
            f"frames/s, efficiency {bound / alone[slowest]:.2f}"
        )
        print(f"{'runner':<14}{'frames':>8}{'wall s':>9}{'frames/s':>10}{'efficiency':>12}")
        for runner, (n, wall, _) in results.items():
            rate = n / wall
            print(f"{runner:<14}{n:>8}{wall:>9.1f}{rate:>10.1f}{rate / alone[slowest]:>12.2f}")
        for runner, (_, _, stages) in results.items():
            print(f"  {runner}, inside the run: {stages}")

        long_cfg = load_config(
            PreprocessConfig,
            args.config,
            [
                f"decode.max_frames={args.long_frames}",
                f"pose.threads={len(cores)}",
                *args.overrides,
            ],
        )
        with WorkerMemory() as memory:
            n, wall, _ = end_to_end("ray", video, long_cfg)
        print(f"memory, Ray job on {n} frames ({wall:.0f} s): peak unique memory (USS) per worker")
        for pid, peak in sorted(memory.peak.items(), key=lambda kv: -kv[1]):
            ran = " + ".join(sorted(memory.names[pid])) or "IDLE"
            print(f"  {peak / 2**20:8.0f} MiB  pid {pid}  {ran}")
        print(f"  {memory.driver_peak / 2**20:8.0f} MiB  driver (this process: the shard writer)")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
