"""Per-stage throughput of the CPU preprocessing chain, measured in one run on one input.

    .venv/bin/python benchmarks/preprocess_cpu.py [--video PATH] [--frames 256] [KEY=VALUE ...]

Prints frames/s of each stage (decode, encode, pose, flow, depth, geometry, pack, shard write), the
geometry cost per frame as a ratio to the decode cost (target <= 0.10), and the bytes per
frame of every shard field. Stages run one after another over the same clips, each timed
alone, built from the stage table both runners use (``preprocess.stages.STAGES``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from preprocess.clip import Clip, EncodedClip
from preprocess.config import PreprocessConfig
from preprocess.decode import iter_clips, probe_video
from preprocess.runner import backend_identities, build_steps, load_models, video_row_ok
from preprocess.stages import DECODE, finished, run_stage
from preprocess.weights import assets_dir
from shards.config import config_to_dict, load_config
from shards.writer import ShardWriter

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video",
        default=str(assets_dir() / "videos" / "vtest.avi"),
        help="input video (default: vtest.avi of $MCANIM_ASSETS)",
    )
    parser.add_argument("--frames", type=int, default=256, help="stored frames to process")
    parser.add_argument(
        "--config",
        default=str(REPO / "jobs" / "preprocess" / "cpu.yaml"),
        help="preprocessing preset (default jobs/preprocess/cpu.yaml)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    cfg = load_config(
        PreprocessConfig, args.config, [f"decode.max_frames={args.frames}", *args.overrides]
    )

    seconds: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    info = probe_video(str(Path(args.video).resolve()), cfg.decode)
    clips: list[Clip] = list(iter_clips(info, cfg.decode))
    seconds[DECODE] = time.perf_counter() - start
    frames = sum(c.n_frames for c in clips)

    models = load_models(cfg)
    run_meta = {"config": config_to_dict(cfg), "backends": backend_identities(models)}
    for stage, fn in build_steps(cfg, run_meta, models):  # every stage of the table, alone
        start = time.perf_counter()
        clips = [run_stage(stage, fn, c, None, 0.0) for c in clips]
        seconds[stage.name] = time.perf_counter() - start
    encoded: list[EncodedClip] = [finished(c) for c in clips]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with ShardWriter(tmp, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
            staging = writer.begin_video(info.video_id)
            for e in encoded:
                staging.add(e.fields, e.row)
            staging.commit(video_row_ok(info, [e.row for e in encoded], 0.0))
        seconds["write"] = time.perf_counter() - start

    maps = (encoded[0].row.map_height, encoded[0].row.map_width)
    print(
        f"input: {args.video} -> {info.width}x{info.height} @ {info.fps:g} fps, "
        f"{len(clips)} clips, {frames} frames, maps {maps}"
    )
    print(f"{'stage':<10}{'frames/s':>12}{'ms/frame':>12}")
    for name, sec in seconds.items():
        rate = f"{frames / sec:>12.1f}" if sec >= 1e-3 else f"{'(no work)':>12}"
        print(f"{name:<10}{rate}{1000 * sec / frames:>12.3f}")
    ratio = seconds["geometry"] / seconds["decode"]
    print(f"geometry / decode cost per frame: {ratio:.3f} (target <= 0.10)")
    sizes: dict[str, int] = defaultdict(int)
    for e in encoded:
        for name, value in e.fields.items():
            if not name.startswith("__"):
                sizes[name] += len(value)
    print(f"{'field':<12}{'bytes/frame':>14}")
    for name, total in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{name:<12}{total / frames:>14.0f}")
    print(f"{'total':<12}{sum(sizes.values()) / frames:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
