"""Per-stage throughput of the CPU preprocessing chain, measured in one run on one input.

    .venv/bin/python benchmarks/preprocess_cpu.py [--video PATH] [--frames 256] [KEY=VALUE ...]

Prints frames/s of each stage (decode, pose, flow, depth, geometry, encode, shard write), the
geometry cost per frame as a ratio to the decode cost (target <= 0.10), and the bytes per
frame of every shard field. Stages run one after another over the same clips, each timed
alone, through the same functions the job uses (``preprocess.stages``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from preprocess.clip import Clip  # noqa: E402
from preprocess.config import PreprocessConfig  # noqa: E402
from preprocess.decode import iter_clips, probe_video  # noqa: E402
from preprocess.pipeline import Extractors  # noqa: E402
from preprocess.stages import encode_stage, geometry_stage, video_row_ok  # noqa: E402
from shards.config import config_to_dict, load_config  # noqa: E402
from shards.writer import ShardWriter  # noqa: E402


def assets() -> Path:
    return Path(os.environ.get("MCANIM_ASSETS", REPO.parent / "shared" / "assets"))


def timed(fn, items):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = [fn(x) for x in items]
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(assets() / "videos" / "vtest.avi"))
    parser.add_argument("--frames", type=int, default=256, help="stored frames to process")
    parser.add_argument("--config", default=str(REPO / "jobs" / "preprocess" / "cpu.yaml"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(
        PreprocessConfig, args.config, [f"decode.max_frames={args.frames}", *args.overrides]
    )

    seconds: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    info = probe_video(str(Path(args.video).resolve()), cfg.decode)
    clips: list[Clip] = list(iter_clips(info, cfg.decode))
    seconds["decode"] = time.perf_counter() - start
    frames = sum(c.n_frames for c in clips)

    ex = Extractors(cfg)
    run_meta = {"config": config_to_dict(cfg), "backends": ex.identity()}
    clips, seconds["pose"] = timed(ex.pose, clips)
    clips, seconds["flow"] = timed(ex.flow, clips)
    clips, seconds["depth"] = timed(ex.depth, clips)
    clips, seconds["geometry"] = timed(lambda c: geometry_stage(c, cfg), clips)
    encoded, seconds["encode"] = timed(lambda c: encode_stage(c, cfg, run_meta), clips)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with ShardWriter(tmp, cfg.shards.max_clips, cfg.shards.max_bytes) as writer:
            staging = writer.begin_video(info.video_id)
            for e in encoded:
                staging.add(e.fields, e.row)
            staging.commit(video_row_ok(info, [e.row for e in encoded], 0.0))
        seconds["write"] = time.perf_counter() - start

    print(
        f"input: {args.video} -> {info.width}x{info.height} @ {info.fps:g} fps, "
        f"{len(clips)} clips, {frames} frames, maps {clips[0].geometry.mask.shape[1:]}"
    )  # type: ignore[union-attr]
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
