"""Tiny preprocessing outputs for the training tests, written with ``shards/``.

Clips of 8 frames at 48x64 (stored) with maps at 12x16, people whose keypoints form standing
skeletons (so masks and order maps are not empty), random backward flow, ranks by x position.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from preprocess.config import PreprocessConfig
from shards.codec import encode_sample
from shards.config import config_to_dict
from shards.schema import NUM_KEYPOINTS, ClipRow, with_format_version
from shards.storage import write_text
from shards.writer import ShardWriter
from tests.shards.synthetic import FPS, MAP_H, MAP_W, H, W, make_sample, ok_video_row, video_id

# A standing figure in units of its height, COCO body order (x right, y down, feet at y = 0).
_BODY = np.array(
    [
        [0.0, -0.92], [-0.03, -0.95], [0.03, -0.95], [-0.06, -0.93], [0.06, -0.93],
        [-0.12, -0.8], [0.12, -0.8], [-0.17, -0.6], [0.17, -0.6], [-0.19, -0.42],
        [0.19, -0.42], [-0.08, -0.48], [0.08, -0.48], [-0.09, -0.25], [0.09, -0.25],
        [-0.09, -0.02], [0.09, -0.02],
    ],
    np.float32,
)  # fmt: skip


def person(cx: float, feet_y: float, height: float, score: float = 0.9) -> np.ndarray:
    """(133, 3) keypoints of a standing person (body points only, the rest score 0)."""
    kps = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    kps[:17, 0] = cx + _BODY[:, 0] * height
    kps[:17, 1] = feet_y + _BODY[:, 1] * height
    kps[:17, 2] = score
    return kps


def clip_pose(t: int, people: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, P, 133, 3) keypoints of ``people`` walking people and their (T, P) int8 ranks."""
    rng = np.random.default_rng(seed)
    pose = np.zeros((t, people, NUM_KEYPOINTS, 3), np.float32)
    starts = rng.uniform(10, W - 10, people)
    feet = rng.uniform(H * 0.7, H - 2, people)
    for i in range(t):
        for p in range(people):
            pose[i, p] = person(starts[p] + 1.5 * i * (-1) ** p, feet[p], H * 0.6)
    nearness = np.broadcast_to(feet, (t, people))  # lower feet = nearer
    ranks = np.argsort(np.argsort(-nearness, axis=1), axis=1).astype(np.int8)
    return pose, ranks


def clip_row(key: str, vid: str, index: int, t: int, people: int, bg: float) -> ClipRow:
    return ClipRow(
        key=key, shard="", video_id=vid, source=f"/videos/{vid}.mp4", clip_index=index,
        start_frame=index * t, end_frame=index * t + t - 1, n_frames=t, fps=FPS, width=W,
        height=H, map_width=MAP_W, map_height=MAP_H, n_tracks=people, bg_flow_mean=bg,
        bg_flow_p95=2 * bg, occlusion_rate_mean=0.1 if people >= 2 else None,
        occlusion_rate_max=0.2 if people >= 2 else None, characters_max=people,
        characters_mode=people, multi_character_frac=1.0 if people >= 2 else 0.0,
        pose_score_mean=0.9,
    )  # fmt: skip


def write_train_output(
    root: Path,
    videos: list[list[int]],
    t: int = 8,
    broken: dict[str, str] | None = None,
) -> list[ClipRow]:
    """An output with one video per entry of ``videos`` (the people count of each clip).

    ``broken`` maps a clip key to a defect: ``mp4`` (undecodable video bytes) or ``short``
    (a 2-frame clip). Writes ``config.yaml`` (default preprocessing config) like a real run.
    """
    broken = broken or {}
    rows: list[ClipRow] = []
    with ShardWriter(root, max_clips=3) as writer:
        for n, counts in enumerate(videos):
            vid = video_id(n + 1)
            staging = writer.begin_video(vid)
            vrows = []
            for i, people in enumerate(counts):
                key = f"{vid}_{i * t:07d}"
                frames = 2 if broken.get(key) == "short" else t
                sample = make_sample(key, t=frames, p=people, seed=10 * n + i)
                pose, ranks = clip_pose(frames, people, seed=10 * n + i)
                sample = replace(sample, pose=pose, ranks=ranks)
                fields = encode_sample(sample, preset="ultrafast")
                if broken.get(key) == "mp4":
                    fields["mp4"] = b"not an mp4 at all"
                row = clip_row(key, vid, i, frames, people, bg=0.5 + 3 * n + i)
                staging.add(fields, row)
                vrows.append(row)
            staging.commit(ok_video_row(vid, vrows))
            rows += vrows
    config = with_format_version(config_to_dict(PreprocessConfig()))
    write_text(root / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return rows
