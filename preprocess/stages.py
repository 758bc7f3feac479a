"""The stage table: every stage of a clip's way from decoding to the shard writer, once.

Both runners (``preprocess.pipeline``, in process, and ``preprocess.ray_job``, on Ray) build
their stages from :data:`STAGES` and call each one through :func:`run_stage`, the one place
where a stage is timed (into ``clip.seconds[name]``, hence the clip row's ``seconds_NAME``
and the run summary), where its exceptions become a :class:`~preprocess.clip.StageError`
naming it (a ``failed`` video row), and where the video's deadline cuts it off
(``run.video_timeout_s``, :mod:`preprocess.deadline`).

    decode   (probe_video + decoded_clips)    1 video -> N clips    CPU  } task per video
    encode   EncodeStage: frames -> mp4       1 clip -> 1 clip      CPU  }
    pose     PoseStage                        1 clip -> 1 clip      model: actor pool
    flow     FlowStage                        1 clip -> 1 clip      model: actor pool
    depth    DepthStage                       1 clip -> 1 clip      model: actor pool
    geometry GeometryStage                    1 clip -> 1 clip      CPU  } one task per clip
    pack     PackStage: the sample's fields   1 clip -> 1 sample    CPU  }

The frames are encoded (x264) right after decoding, in the decode task, so that no stage after
the models needs the pixels: a stage says whether it reads them (``Stage.reads_frames``), and
the Ray job ships a clip's frames only as far as the last stage that does (one hop with the
fused extractors: decode -> extractors; docs/cluster.md).

Adding a stage is one :class:`Stage` entry in :data:`STAGES`: a model stage (its ``__init__``
loads the model: once per run in process, once per actor on Ray) or a CPU stage (cheap to
build: on Ray it is built in the task of each clip, and consecutive CPU stages share a task).
Its time shows in the summary; a ``seconds_NAME`` column of ``shards.schema.ClipRow`` keeps
it in the statistics too. After the last stage the clip carries its :class:`EncodedClip`,
which :func:`finished` hands on to the shard writer.

The video codecs (decord, PyAV) are imported inside the decode, encode and pack stages, so the model
stages (and :mod:`preprocess.fused`) import on a machine without them: the GPU check
(``benchmarks/gpu_check.py``, docs/gpu.md) runs the extractors there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from preprocess.clip import Clip, EncodedClip, StageError, VideoInfo, stage
from preprocess.config import PreprocessConfig, RunConfig
from preprocess.deadline import within_deadline
from preprocess.depth import create_depth_backend
from preprocess.devices import cpu_threads
from preprocess.flow import create_flow_backend
from preprocess.geometry import clip_geometry, map_size
from preprocess.pose import create_pose_backend
from shards.schema import ClipRow, Sample

DECODE = "decode"
"""The first stage, turning a video into clips (:func:`probe` and :func:`decoded_clips`)."""
RunMeta = Mapping[str, Any]
"""``{"config": ..., "backends": ...}``: the run's resolved config and backend identities,
written into every clip's ``json``."""


class StageFn(Protocol):
    """A built stage: fills in its part of a clip."""

    def __call__(self, clip: Clip) -> Clip: ...


class ModelStage(StageFn, Protocol):
    """A built model stage; it says which models it loaded."""

    def backends(self) -> dict[str, Any]:
        """Identity (name, model path, sha256 of its weights) of each backend, by kind."""
        ...


@dataclass(frozen=True)
class Resources:
    """What one Ray worker of a stage holds."""

    cpus: float
    gpus: float = 0.0
    actors: int = 0
    """Model stages: actors in the pool."""


@dataclass(frozen=True)
class Stage:
    """One entry of the stage table: give exactly one of ``model`` and ``cpu``."""

    name: str
    """``clip.seconds`` key, ``seconds_NAME`` column, summary label, ``error_stage`` value."""
    resources: Callable[[RunConfig], Resources]
    """The Ray resources of one worker (consecutive CPU stages share one task: the largest)."""
    model: Callable[[PreprocessConfig], ModelStage] | None = None
    """Builds a model stage (an actor pool on Ray)."""
    cpu: Callable[[PreprocessConfig, RunMeta], StageFn] | None = None
    """Builds a CPU stage (a task on Ray)."""
    reads_frames: bool = True
    """Whether the stage reads ``clip.frames`` (after the last stage that does, the Ray job
    ships the clip without its pixels)."""

    def __post_init__(self) -> None:
        if (self.model is None) == (self.cpu is None):
            raise ValueError(f"stage {self.name!r}: give exactly one of model= and cpu=")

    @property
    def is_model(self) -> bool:
        return self.model is not None


# --- model stages ---------------------------------------------------------------------------


def clip_map_size(clip: Clip, cfg: PreprocessConfig) -> tuple[int, int]:
    """(h, w) of the clip's maps."""
    return map_size(clip.video.height, clip.video.width, cfg.geometry.map_downscale)


class PoseStage:
    """Tracked whole-body keypoints (T, P, 133, 3) of every clip."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.backend = create_pose_backend(cfg.pose)

    def backends(self) -> dict[str, Any]:
        return {"pose": self.backend.identity()}

    def __call__(self, clip: Clip) -> Clip:
        clip.keypoints = self.backend.clip_keypoints(clip)  # (T, P, 133, 3)
        return clip


class FlowStage:
    """Backward flow (T, h, w, 2) in stored pixels per frame."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        self.backend = create_flow_backend(cfg.flow)

    def backends(self) -> dict[str, Any]:
        return {"flow": self.backend.identity()}

    def __call__(self, clip: Clip) -> Clip:
        clip.flow = self.backend.clip_flow(clip.frames, clip_map_size(clip, self.cfg))
        return clip


class DepthStage:
    """Relative inverse depth (T, h, w), or None with the weightless heuristic."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        self.backend = create_depth_backend(cfg.depth)

    def backends(self) -> dict[str, Any]:
        return {"depth": self.backend.identity()}

    def __call__(self, clip: Clip) -> Clip:
        clip.depth = self.backend.clip_depth(clip.frames, clip_map_size(clip, self.cfg))
        return clip


# --- CPU stages -----------------------------------------------------------------------------


class EncodeStage:
    """The clip's frames as H.264 MP4 (x264, ``shards.crf`` / ``shards.x264_preset``, on
    :func:`~preprocess.devices.cpu_threads` threads): the frames' last reader besides the
    models, run right after decoding."""

    def __init__(self, cfg: PreprocessConfig, run_meta: RunMeta) -> None:
        self.shards = cfg.shards

    def __call__(self, clip: Clip) -> Clip:
        from shards.codec import encode_frames  # PyAV: imported where used (see above)

        crf, preset = self.shards.crf, self.shards.x264_preset
        clip.mp4 = encode_frames(clip.frames, clip.video.fps, crf, preset, cpu_threads())
        return clip


class GeometryStage:
    """Masks, ranks, depth order and clip statistics (docs/design.md §3)."""

    def __init__(self, cfg: PreprocessConfig, run_meta: RunMeta) -> None:
        self.cfg = cfg

    def __call__(self, clip: Clip) -> Clip:
        assert clip.keypoints is not None and clip.flow is not None, "run pose and flow first"
        frame_size = (clip.video.height, clip.video.width)
        clip.geometry = clip_geometry(
            clip.keypoints, clip.flow, frame_size, self.cfg.geometry, clip.depth
        )
        return clip


class PackStage:
    """The clip as WebDataset fields (its mp4 from the encode stage; the maps compressed) and
    its ``stats/clips`` row."""

    def __init__(self, cfg: PreprocessConfig, run_meta: RunMeta) -> None:
        self.cfg, self.run_meta = cfg, run_meta

    def __call__(self, clip: Clip) -> Clip:
        assert clip.geometry is not None and clip.keypoints is not None and clip.flow is not None
        assert clip.mp4 is not None, "run the encode stage first"
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
            meta=clip_meta(clip, row, self.run_meta),
        )
        from shards.codec import encode_sample  # PyAV: imported where used (see above)

        fields = encode_sample(sample, flow_step=self.cfg.shards.flow_step or None, mp4=clip.mp4)
        clip.encoded = EncodedClip(key=clip.key, fields=fields, row=row)
        return clip


STAGES: tuple[Stage, ...] = (
    Stage("encode", lambda r: Resources(r.decode_cpus), cpu=EncodeStage),
    Stage("pose", lambda r: Resources(r.pose_cpus, r.pose_gpus, r.pose_actors), model=PoseStage),
    Stage("flow", lambda r: Resources(r.flow_cpus, r.flow_gpus, r.flow_actors), model=FlowStage),
    Stage(
        "depth", lambda r: Resources(r.depth_cpus, r.depth_gpus, r.depth_actors), model=DepthStage
    ),
    Stage("geometry", lambda r: Resources(r.geometry_cpus), cpu=GeometryStage, reads_frames=False),
    Stage("pack", lambda r: Resources(r.geometry_cpus), cpu=PackStage, reads_frames=False),
)
"""The per-clip stages after decoding, in order (read at call time: tests may patch it)."""


def stage_names() -> tuple[str, ...]:
    """Every stage's name in order, decode first."""
    return (DECODE, *(s.name for s in STAGES))


def stage_rank(name: str) -> int:
    """Position of stage ``name`` (decode 0; a name of no stage, such as ``job``, last): of
    two failures of one video, the earlier stage's is the one a video row reports."""
    names = stage_names()
    return names.index(name) if name in names else len(names)


# --- running a stage ------------------------------------------------------------------------


def run_stage(
    entry: Stage, fn: StageFn, clip: Clip, deadline: float | None, timeout_s: float
) -> Clip:
    """``fn(clip)`` as stage ``entry``: timed into ``clip.seconds``, exceptions as StageError
    naming it, cut off at the video's ``deadline`` (epoch s; ``timeout_s`` for the message)."""
    with stage(entry.name, clip.seconds):
        return within_deadline(entry.name, deadline, fn, clip, timeout_s=timeout_s)


def run_stages(
    steps: Sequence[tuple[Stage, StageFn]], clip: Clip, deadline: float | None, timeout_s: float
) -> Clip:
    """The clip through ``steps`` (built stages, in table order) with :func:`run_stage`."""
    for entry, fn in steps:
        clip = run_stage(entry, fn, clip, deadline, timeout_s)
    return clip


def probe(source: str, cfg: PreprocessConfig, deadline: float | None) -> VideoInfo:
    """``decode.probe_video`` as the decode stage, within the video's deadline."""
    from preprocess.decode import probe_video  # decord + PyAV: imported where used

    with stage(DECODE):
        limit = cfg.run.video_timeout_s
        return within_deadline(DECODE, deadline, probe_video, source, cfg.decode, timeout_s=limit)


def decoded_clips(info: VideoInfo, cfg: PreprocessConfig, deadline: float | None) -> Iterator[Clip]:
    """The video's clips one at a time (bounded memory), each timed as the decode stage."""
    from preprocess.decode import iter_clips  # decord + PyAV: imported where used

    clips = iter_clips(info, cfg.decode)
    limit = cfg.run.video_timeout_s
    while True:
        seconds: dict[str, float] = {}
        with stage(DECODE, seconds):
            clip = within_deadline(DECODE, deadline, next, clips, None, timeout_s=limit)
        if clip is None:
            return
        clip.seconds.update(seconds)
        yield clip


SECONDS_COLUMNS = frozenset(
    f.name for f in dataclasses.fields(ClipRow) if f.name.startswith("seconds_")
)
"""The ``seconds_NAME`` columns of ``stats/clips``: a stage without one is timed all the same
(``EncodedClip.seconds``, the run summary)."""


def finished(clip: Clip) -> EncodedClip:
    """The encoded clip of a clip through every stage, with the stage times in its row."""
    if clip.encoded is None:
        raise StageError(STAGES[-1].name, "the last stage did not encode the clip")
    times = dict(clip.seconds)
    columns = {f"seconds_{n}": s for n, s in times.items() if f"seconds_{n}" in SECONDS_COLUMNS}
    row = dataclasses.replace(clip.encoded.row, **columns)  # type: ignore[arg-type]
    return EncodedClip(clip.encoded.key, clip.encoded.fields, row, times)


# --- the encoded clip's row and metadata ----------------------------------------------------


def clip_row(clip: Clip) -> ClipRow:
    """The clip's ``stats/clips`` row (``shard`` is filled in by the writer, ``seconds_*`` by
    :func:`finished`)."""
    assert clip.geometry is not None and clip.keypoints is not None
    info, stats = clip.video, clip.geometry.stats
    h, w = clip.geometry.mask.shape[1:]
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
    )


def clip_meta(clip: Clip, row: ClipRow, run_meta: RunMeta) -> dict[str, Any]:
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
