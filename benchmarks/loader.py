"""Throughput of the training loader, and the data-wait fraction of a tiny training run.

    .venv/bin/python benchmarks/loader.py                       # on make demo's output
    .venv/bin/python benchmarks/loader.py --root out/ds --samples 32 --workers 2
    .venv/bin/python benchmarks/loader.py --skip-train          # loader rates only

1. Loader rate: the real :class:`train.loader.ClipStream` through its DataLoader with
   ``--workers`` worker processes, batch 1, at the paper's canvas: stage 1 (one target frame +
   reference at 896x640) and stage 2 (16 frames at 896x640). Everything a training sample
   costs is in it: reading the tar, decoding the whole H.264 clip and the maps, resize + crop,
   skeletal dilation masks, pose maps, flow guider input, depth-order maps, CLIP preprocessing.
   Reported after ``--warmup`` samples (worker start-up) over ``--samples`` samples.
2. Data wait: a tiny stage-1 run (``jobs/train/tiny_stage1.yaml``, single process, in this
   process) on the same data; ``data_wait`` of its step lines = time blocked on the loader /
   step time, over the steps after the first.

The comparison: a GPU consumes about 0.42 samples/s in stage 1 (public anchor: A100-40G at
768x768), so a rank needs a loader rate above that; the margin printed is loader rate / 0.42.
On a GPU node the loader's workers run on the node's CPU cores beside the GPU, one set per
rank; a shared 2-core VM gives a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from itertools import islice
from pathlib import Path

from model.config import preset_config
from train.config import DataConfig
from train.loader import ClipStream, dataset_geometry, make_loader, select_clips

REPO = Path(__file__).resolve().parents[1]  # --root and the job YAML are relative to it

GPU_SAMPLES_PER_S = 0.42  # stage 1, A100-40G, 768x768 (public anchor)


def loader_rate(root: str, frames: int, workers: int, samples: int, warmup: int) -> float:
    """Samples per second of the loader at 896x640 with ``frames`` target frames."""
    cfg = DataConfig(root=root, workers=workers, height=896, width=640, shuffle_buffer=8)
    selection = select_clips(cfg, holdout=0)
    stream = ClipStream(cfg, selection, frames, dataset_geometry(root), preset_config("sd15"))
    batches = iter(make_loader(stream, batch_size=1))
    for batch in islice(batches, warmup):
        assert batch.frames.shape[1:] == (frames, 3, 896, 640)
    start = time.perf_counter()
    for _ in islice(batches, samples):
        pass
    return samples / (time.perf_counter() - start)


def data_wait(root: str, steps: int) -> dict[str, float]:
    """Mean data-wait fraction and samples/s of a tiny stage-1 run (steps after the first)."""
    from model.init import main as model_init
    from train.main import main as train_main

    with tempfile.TemporaryDirectory() as tmp:
        assert model_init(["--preset", "tiny", "--out", f"{tmp}/init"]) == 0
        overrides = [
            f"data.root={root}",
            f"init_from={tmp}/init",
            f"output_dir={tmp}/run",
            f"train.max_steps={steps}",
            "validation.every=0",
            "checkpoint.export=false",
            f"checkpoint.every={steps}",
        ]
        assert train_main(["--config", "jobs/train/tiny_stage1.yaml", *overrides]) == 0
        lines = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines][1:]
    return {
        "data_wait": sum(r["data_wait"] for r in rows) / len(rows),
        "samples_per_s": sum(r["samples_per_s"] for r in rows) / len(rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="out/demo", help="preprocessing output (make demo)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--samples", type=int, default=12, help="samples timed per stage")
    p.add_argument("--warmup", type=int, default=2, help="samples before timing")
    p.add_argument("--train-steps", type=int, default=12, help="steps of the tiny run")
    p.add_argument("--skip-train", action="store_true", help="loader rates only")
    args = p.parse_args(argv)
    os.chdir(REPO)
    print(
        f"loader on {args.root}, {args.workers} workers, 896x640 canvas (cpu count {os.cpu_count()})"
    )
    for stage, frames in (("stage 1", 1), ("stage 2", 16)):
        rate = loader_rate(args.root, frames, args.workers, args.samples, args.warmup)
        line = f"{stage}: {frames:2d} x 896 x 640  {rate:6.2f} samples/s"
        if frames == 1:
            line += f"  ({rate / GPU_SAMPLES_PER_S:.1f}x the ~{GPU_SAMPLES_PER_S} samples/s an A100 consumes)"
        print(line, flush=True)
    if not args.skip_train:
        result = data_wait(args.root, args.train_steps)
        print(
            f"tiny stage-1 run (64x48, batch 2, 2 workers): data-wait fraction "
            f"{result['data_wait']:.2f}, {result['samples_per_s']:.2f} samples/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
