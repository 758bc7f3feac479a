"""The per-clip stages. The local run and the Ray job call these same functions and classes.

Model stages are classes whose ``__init__`` loads the model once (in a Ray actor, once per
actor); CPU stages are functions. Every stage times itself into ``clip.seconds`` and turns
any exception into a :class:`~preprocess.clip.StageError` naming the stage.

    decode (preprocess.decode.iter_clips)       1 video -> N clips     CPU
    PoseStage                                   1 clip -> 1 clip       model (CPU/GPU)
    FlowStage                                   1 clip -> 1 clip       model (CPU/GPU)
    DepthStage                                  1 clip -> 1 clip       model (CPU/GPU)
    geometry_stage                              1 clip -> 1 clip       CPU
    encode_stage                                1 clip -> 1 sample     CPU
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from preprocess.clip import Clip, VideoInfo, stage
from preprocess.config import PreprocessConfig
from preprocess.depth import create_depth_backend
from preprocess.flow import create_flow_backend
from preprocess.geometry import clip_geometry, map_size
from preprocess.pose import create_pose_backend
from shards.codec import encode_sample
from shards.schema import ClipRow, Sample, VideoRow


def clip_map_size(clip: Clip, cfg: PreprocessConfig) -> tuple[int, int]:
    """(h, w) of the clip's maps."""
    return map_size(clip.video.height, clip.video.width, cfg.geometry.map_downscale)


class PoseStage:
    """Tracked whole-body keypoints (T, P, 133, 3) of every clip."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.backend = create_pose_backend(cfg.pose)

    def __call__(self, clip: Clip) -> Clip:
        with stage("pose", clip.seconds):
            clip.keypoints = self.backend.clip_keypoints(clip)
        return clip


class FlowStage:
    """Backward flow (T, h, w, 2) in stored pixels per frame."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        self.backend = create_flow_backend(cfg.flow)

    def __call__(self, clip: Clip) -> Clip:
        with stage("flow", clip.seconds):
            clip.flow = self.backend.clip_flow(clip.frames, clip_map_size(clip, self.cfg))
        return clip


class DepthStage:
    """Relative inverse depth (T, h, w), or None with the weightless heuristic."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        self.backend = create_depth_backend(cfg.depth)

    def __call__(self, clip: Clip) -> Clip:
        with stage("depth", clip.seconds):
            clip.depth = self.backend.clip_depth(clip.frames, clip_map_size(clip, self.cfg))
        return clip


def geometry_stage(clip: Clip, cfg: PreprocessConfig) -> Clip:
    """Masks, ranks, depth order and clip statistics (DESIGN §3)."""
    with stage("geometry", clip.seconds):
        assert clip.keypoints is not None and clip.flow is not None, "run pose and flow first"
        frame_size = (clip.video.height, clip.video.width)
        clip.geometry = clip_geometry(
            clip.keypoints, clip.flow, frame_size, cfg.geometry, clip.depth
        )
    return clip


@dataclass
class EncodedClip:
    """A clip ready for the shard writer: its encoded fields and its Parquet row."""

    key: str
    fields: dict[str, Any]
    row: ClipRow


def encode_stage(clip: Clip, cfg: PreprocessConfig, run_meta: dict[str, Any]) -> EncodedClip:
    """Encode one clip into WebDataset fields (the mp4 re-encode dominates)."""
    with stage("encode", clip.seconds):
        assert clip.geometry is not None and clip.keypoints is not None and clip.flow is not None
        row = clip_row(clip)
        sample = Sample(
            key=clip.key,
            frames=clip.frames,
            fps=clip.video.fps,
            pose=clip.keypoints,
            flow=clip.flow,
            mask=clip.geometry.mask,
            order=clip.geometry.order,
            ranks=clip.geometry.ranks,
            depth=clip.depth,
            meta=clip_meta(clip, row, run_meta),
        )
        fields = encode_sample(
            sample,
            crf=cfg.shards.crf,
            preset=cfg.shards.x264_preset,
            flow_step=cfg.shards.flow_step or None,
        )
    row.seconds_encode = clip.seconds.get("encode", 0.0)
    return EncodedClip(key=clip.key, fields=fields, row=row)


def clip_row(clip: Clip) -> ClipRow:
    """The clip's ``stats/clips`` row (``shard`` is filled in by the writer)."""
    assert clip.geometry is not None and clip.keypoints is not None
    info, stats = clip.video, clip.geometry.stats
    h, w = clip.geometry.mask.shape[1:]
    sec = clip.seconds
    return ClipRow(
        key=clip.key,
        shard="",
        video_id=info.video_id,
        source=info.source,
        clip_index=clip.index,
        start_frame=int(clip.source_frames[0]),
        end_frame=int(clip.source_frames[-1]),
        n_frames=clip.n_frames,
        fps=info.fps,
        width=info.width,
        height=info.height,
        map_width=int(w),
        map_height=int(h),
        n_tracks=int(clip.keypoints.shape[1]),
        **stats,  # type: ignore[arg-type]
        seconds_decode=sec.get("decode", 0.0),
        seconds_pose=sec.get("pose", 0.0),
        seconds_flow=sec.get("flow", 0.0),
        seconds_depth=sec.get("depth", 0.0),
        seconds_geometry=sec.get("geometry", 0.0),
    )


def clip_meta(clip: Clip, row: ClipRow, run_meta: dict[str, Any]) -> dict[str, Any]:
    """The sample's ``json``: where the clip comes from, its stats, the config and backends."""
    info = clip.video
    return {
        "key": clip.key,
        "source": info.source,
        "video_id": info.video_id,
        "clip_index": clip.index,
        "source_frames": clip.source_frames.tolist(),
        "fps": info.fps,
        "src_fps": info.src_fps,
        "width": info.width,
        "height": info.height,
        "src_width": info.src_width,
        "src_height": info.src_height,
        "rotation": info.rotation,
        "map_width": row.map_width,
        "map_height": row.map_height,
        "stats": clip.geometry.stats if clip.geometry else {},
        **run_meta,
    }


def video_row_ok(info: VideoInfo, rows: list[ClipRow], seconds: float) -> VideoRow:
    """A finished video's row, with statistics aggregated frame-weighted over its clips."""
    status = "ok" if rows else "skipped"
    return VideoRow(
        video_id=info.video_id,
        source=info.source,
        status=status,
        error_stage=None if rows else "decode",
        error=None if rows else "no shot long enough for a clip (decode.min_clip_frames)",
        n_clips=len(rows),
        n_frames=sum(r.n_frames for r in rows),
        duration_s=info.src_frames / info.src_fps if info.src_fps > 0 else None,
        src_width=info.src_width,
        src_height=info.src_height,
        src_fps=info.src_fps,
        src_frames=info.src_frames,
        rotation=info.rotation,
        codec=info.codec,
        width=info.width,
        height=info.height,
        fps=info.fps,
        bg_flow_mean=_weighted([(r.bg_flow_mean, r.n_frames - 1) for r in rows]),
        occlusion_rate_mean=_weighted(
            [(r.occlusion_rate_mean, r.multi_character_frac * r.n_frames) for r in rows]
        ),
        characters_max=max((r.characters_max for r in rows), default=0),
        multi_character_frac=_weighted([(r.multi_character_frac, r.n_frames) for r in rows]),
        seconds=seconds,
    )


def _weighted(pairs: list[tuple[float | None, float]]) -> float | None:
    """Weighted mean of the non-null values; None when nothing has weight."""
    kept = [(v, w) for v, w in pairs if v is not None and w > 0]
    total = sum(w for _, w in kept)
    return float(np.sum([v * w for v, w in kept]) / total) if total > 0 else None
