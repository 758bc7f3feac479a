"""Tiny synthetic clips, rows and outputs for the shard tests (8 frames of 64x48 by default)."""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import numpy as np

from shards.codec import encode_sample
from shards.schema import NUM_KEYPOINTS, ClipRow, Sample, VideoRow
from shards.validate import video_stats
from shards.writer import ShardWriter

T, H, W = 8, 48, 64
MAP_H, MAP_W = 12, 16
FPS = 25.0


def video_id(n: int) -> str:
    """A 16-hex-digit video id, as ``preprocess.clip.video_id_for`` makes them."""
    return f"{n:016x}"


def clip_key(vid: str, start: int) -> str:
    return f"{vid}_{start:07d}"


def natural_frames(t: int = T, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A camera-like clip: shaded texture drifting right, a soft moving blob, sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(t):
        tex = 60 * np.sin((xx + 1.5 * i) / 7.0) * np.cos(yy / 9.0)
        img = np.stack([120 + tex, 90 + 90 * yy / h + tex / 2, 80 + 100 * xx / w], axis=-1)
        dist = np.hypot(xx - (w / 4 + 2 * i), yy - h / 2)
        alpha = np.clip((h / 5 - dist) / 3.0, 0, 1)[..., None]  # soft-edged moving "person"
        img = (1 - alpha) * img + alpha * np.array([190, 90, 70], np.float32)
        img += rng.normal(0, 1, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def make_sample(
    key: str,
    t: int = T,
    p: int = 2,
    depth: bool = True,
    seed: int = 0,
    size: tuple[int, int] = (H, W),
    map_size: tuple[int, int] = (MAP_H, MAP_W),
) -> Sample:
    """A sample whose arrays have every field's dtype, shape and value range."""
    rng = np.random.default_rng(seed)
    (h, w), (mh, mw) = size, map_size
    pose = np.zeros((t, p, NUM_KEYPOINTS, 3), np.float32)
    pose[..., 0] = rng.uniform(0, w, pose.shape[:3])
    pose[..., 1] = rng.uniform(0, h, pose.shape[:3])
    pose[..., 2] = rng.uniform(0, 1, pose.shape[:3])
    pose[:, -1, 17:] = 0.0  # a body-only track: the rest left empty
    ranks = rng.integers(-1, p, (t, p)).astype(np.int8)
    flow = rng.normal(0, 3, (t, mh, mw, 2)).astype(np.float32)
    flow[0] = 0.0
    vid = key.rsplit("_", 1)[0]
    return Sample(
        key=key,
        frames=natural_frames(t, h, w, seed),
        fps=FPS,
        pose=pose,
        flow=flow,
        mask=rng.random((t, mh, mw)) < 0.3,
        order=rng.choice(np.array([0, 64, 128, 191, 255], np.uint8), (t, mh, mw)),
        ranks=ranks,
        meta={"key": key, "video_id": vid, "fps": FPS, "width": w, "height": h},
        depth=rng.random((t, mh, mw)).astype(np.float32) if depth else None,
    )


@functools.lru_cache(maxsize=8)
def _frames_mp4(t: int, h: int, w: int) -> bytes:
    fields = encode_sample(make_sample("cache", t=t, size=(h, w)), preset="ultrafast")
    return bytes(fields["mp4"])  # type: ignore[arg-type]


def encoded_clip(vid: str, index: int, t: int = T, p: int = 2) -> tuple[dict, ClipRow]:
    """(encoded fields, clips row) of clip ``index`` of video ``vid`` (mp4 bytes shared)."""
    key = clip_key(vid, index * t)
    sample = make_sample(key, t=t, p=p, seed=index)
    fields = encode_sample(sample, preset="ultrafast")
    fields["mp4"] = _frames_mp4(t, H, W)
    row = ClipRow(
        key=key,
        shard="",
        video_id=vid,
        source=f"/videos/{vid}.mp4",
        clip_index=index,
        start_frame=index * t,
        end_frame=index * t + t - 1,
        n_frames=t,
        fps=FPS,
        width=W,
        height=H,
        map_width=MAP_W,
        map_height=MAP_H,
        n_tracks=p,
        bg_flow_mean=0.5 + index,
        bg_flow_p95=2.0 + index,
        occlusion_rate_mean=0.1 if p >= 2 else None,
        occlusion_rate_max=0.2 if p >= 2 else None,
        characters_max=p,
        characters_mode=p,
        multi_character_frac=1.0 if p >= 2 else 0.0,
        pose_score_mean=0.5,
    )
    return fields, row


def ok_video_row(vid: str, rows: list[ClipRow]) -> VideoRow:
    """The ok row of a video of ``rows``, its statistics aggregated as ``validate`` checks."""
    return VideoRow(
        video_id=vid,
        source=f"/videos/{vid}.mp4",
        status="ok",
        n_clips=len(rows),
        n_frames=sum(r.n_frames for r in rows),
        width=W,
        height=H,
        fps=FPS,
        **video_stats([asdict(r) for r in rows]),
    )


def failed_row(vid: str, stage: str = "pose", error: str = "ValueError: no poses") -> VideoRow:
    return VideoRow(
        video_id=vid, source=f"/videos/{vid}.mp4", status="failed", error_stage=stage, error=error
    )


def write_video(writer: ShardWriter, vid: str, n_clips: int, p: int = 2) -> list[ClipRow]:
    """Stage and commit one video of ``n_clips`` clips; its rows (with ``shard`` set)."""
    staging = writer.begin_video(vid)
    rows = []
    for i in range(n_clips):
        fields, row = encoded_clip(vid, i, p=p)
        staging.add(fields, row)
        rows.append(row)
    staging.commit(ok_video_row(vid, rows))
    return rows


def write_output(root: Path, clips_per_video: list[int], max_clips: int = 4) -> list[ClipRow]:
    """An output with one video per entry of ``clips_per_video`` and one failed video."""
    rows: list[ClipRow] = []
    with ShardWriter(root, max_clips=max_clips) as writer:
        for n, count in enumerate(clips_per_video):
            rows += write_video(writer, video_id(n + 1), count, p=1 + n % 3)
        writer.add_video_row(failed_row(video_id(999)))
    return rows
