"""Size, speed and quality of the stored clip video: x264 presets x CRFs on real frames.

    .venv/bin/python benchmarks/encoder.py [--video PATH] [--frames 128] [--short-side 640]
        [--presets ultrafast,superfast,veryfast,faster,fast,medium] [--crfs 18,20,23]
        [--repeat 2] [--quick]

The frames are what the job stores: ``preprocess.decode`` (decord, resized once in the
decoder) turns the source (default the 1080x1920 dance video of $MCANIM_ASSETS) into clips at
``--short-side``; each clip is then encoded as the encode stage does (``shards.video.
encode_h264``, one MP4 per clip), with ONE x264 thread, so the time is the CPU cost per core.
For every preset x CRF it prints:

- ``ms/frame``: CPU-seconds of the encoder (all threads of this process, getrusage) per
  stored frame, the least of ``--repeat`` runs (other processes on a shared machine only ever
  add time);
- ``KB/frame``: bytes of the ``mp4`` field per stored frame;
- ``PSNR``: of the decoded clip against the stored (pre-encode) RGB frames, over all frames
  (10 log10(255^2 / MSE), MSE over every pixel and channel);
- the ratio of its time and bytes to the configured default (``shards.x264_preset``,
  ``shards.crf`` of ``preprocess.config.ShardConfig``), which is marked with ``*``.

It also prints the decode stage's CPU ms per stored frame on the same input (decode, the
resize in the decoder, cut detection and clip assembly), so that the table reads against the
target of docs/cluster.md (CPU ms per stored frame outside the models). The figures and the
choice of the default are in docs/cluster.md ("Encoder settings").
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from typing import NamedTuple

import numpy as np

from preprocess.clip import Clip
from preprocess.config import DecodeConfig, ShardConfig
from preprocess.decode import iter_clips, probe_video
from preprocess.weights import assets_dir
from shards.logs import setup_logging
from shards.video import decode_h264, encode_h264

log = logging.getLogger("benchmarks.encoder")

PRESETS = "ultrafast,superfast,veryfast,faster,fast,medium"
CRFS = "18,20,23"


def cpu_seconds() -> float:
    """CPU-seconds used so far by this process, every thread counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Result(NamedTuple):
    preset: str
    crf: int
    ms_per_frame: float
    """CPU ms per stored frame, one x264 thread."""
    bytes_per_frame: float
    psnr: float


def measure(clips: list[Clip], preset: str, crf: int, repeat: int) -> Result:
    """Encode every clip (one x264 thread) ``repeat`` times; the least CPU time counts."""
    frames = sum(c.n_frames for c in clips)
    best = float("inf")
    encoded: list[bytes] = []
    for _ in range(max(1, repeat)):
        start = cpu_seconds()
        encoded = [encode_h264(c.frames, c.video.fps, crf, preset, threads=1) for c in clips]
        best = min(best, cpu_seconds() - start)
    sq_err, count = 0.0, 0
    for clip, data in zip(clips, encoded, strict=True):
        decoded, _ = decode_h264(data)  # (T, H, W, 3)
        if decoded.shape != clip.frames.shape:
            raise RuntimeError(f"{clip.key}: decoded {decoded.shape}, stored {clip.frames.shape}")
        for stored, back in zip(clip.frames, decoded, strict=True):  # (H, W, 3) each
            diff = stored.astype(np.int32) - back
            sq_err += float(np.sum(diff * diff))
            count += diff.size
    mse = sq_err / count
    quality = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    size = sum(len(d) for d in encoded)
    return Result(preset, crf, 1000.0 * best / frames, size / frames, quality)


def decode_clips(video: str, cfg: DecodeConfig) -> tuple[list[Clip], float, float]:
    """(the stored clips, decode stage user and system CPU ms per stored frame)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    clips = list(iter_clips(probe_video(video, cfg), cfg))
    after = resource.getrusage(resource.RUSAGE_SELF)
    frames = sum(c.n_frames for c in clips)
    if frames == 0:
        raise SystemExit(f"{video}: no clip of >= {cfg.min_clip_frames} frames to encode")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return clips, 1000.0 * user / frames, 1000.0 * system / frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--video",
        default=str(assets_dir() / "videos" / "dance_single.mp4"),
        help="source video (default: the 1080x1920 dance_single.mp4 of $MCANIM_ASSETS)",
    )
    parser.add_argument(
        "--frames", type=int, default=128, help="stored frames to encode (decode.max_frames)"
    )
    parser.add_argument(
        "--short-side", type=int, default=640, help="stored short side (decode.short_side)"
    )
    parser.add_argument("--presets", default=PRESETS, help="comma-separated x264 presets")
    parser.add_argument("--crfs", default=CRFS, help="comma-separated x264 CRFs (0..51)")
    parser.add_argument(
        "--repeat", type=int, default=2, help="encodes per setting; the least CPU time counts"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 32 frames, the default setting, ultrafast and medium, one CRF, one repeat",
    )
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    default = ShardConfig()
    presets = [p for p in args.presets.split(",") if p]
    crfs = [int(c) for c in args.crfs.split(",") if c]
    frames, repeat = args.frames, args.repeat
    if args.quick:
        presets = sorted({"ultrafast", "medium", default.x264_preset})
        crfs, frames, repeat = [default.crf], 32, 1
    cfg = DecodeConfig(short_side=args.short_side, max_frames=frames)
    clips, decode_user, decode_sys = decode_clips(os.path.abspath(args.video), cfg)
    decode_ms = decode_user + decode_sys
    n = sum(c.n_frames for c in clips)
    info = clips[0].video
    print(
        f"input: {args.video} {info.src_width}x{info.src_height} -> stored "
        f"{info.width}x{info.height}, {n} frames in {len(clips)} clips; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"decode stage (decode + resize + cuts + clips): {decode_ms:.1f} CPU ms per stored "
        f"frame ({decode_user:.1f} user + {decode_sys:.1f} system: page faults of fresh frame "
        "buffers, costly in a VM)"
    )
    start = time.perf_counter()
    results = [measure(clips, p, c, repeat) for p in presets for c in crfs]
    ref = next(
        (r for r in results if (r.preset, r.crf) == (default.x264_preset, default.crf)), None
    )
    print(
        f"\nx264, one thread, {info.width}x{info.height} "
        f"(* = default: preset {default.x264_preset}, CRF {default.crf})\n"
    )
    print("| preset | CRF | ms/frame | KB/frame | PSNR dB | time ÷ default | bytes ÷ default |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        mark = " *" if r is ref else ""
        t_ratio = f"{r.ms_per_frame / ref.ms_per_frame:.2f}" if ref else "n/a"
        b_ratio = f"{r.bytes_per_frame / ref.bytes_per_frame:.2f}" if ref else "n/a"
        print(
            f"| {r.preset}{mark} | {r.crf} | {r.ms_per_frame:.1f} | "
            f"{r.bytes_per_frame / 1000:.1f} | {r.psnr:.2f} | {t_ratio} | {b_ratio} |"
        )
    print(
        f"\n({time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f} at the end)"
    )
    if ref is not None:
        print(
            f"default: decode {decode_ms:.1f} + encode {ref.ms_per_frame:.1f} = "
            f"{decode_ms + ref.ms_per_frame:.1f} CPU ms per stored frame "
            f"(mp4 {ref.bytes_per_frame / 1000:.1f} KB, {ref.psnr:.2f} dB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
