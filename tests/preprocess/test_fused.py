"""The fused extractor stage and the Ray job's operator layout, without Ray.

``FusedExtractors`` runs the model stages of the table as their own stages (each timed, each
failure naming its stage) on one clip in one object; ``stage_groups`` and ``group_resources``
turn the table into Ray operators: fused, the three model stages are one actor pool holding
the sum of their CPUs and GPUs; separate, one pool each. The transit rows carry a clip's
frames as a plain array beside the pickled rest, and count the bytes they put in the object
store. ``lost_work`` tells an exception Ray raised for lost work (the pass ends, its videos
run again) from a bug (re-raised).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ray.data.exceptions import UserCodeException
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayTaskError

from preprocess.clip import StageError
from preprocess.config import PreprocessConfig
from preprocess.fused import FusedExtractors, frames_clip, model_run
from preprocess.ray_job import (
    cpus_needed,
    frame_readers,
    group_resources,
    lost_work,
    split_lead,
    stage_groups,
)
from preprocess.stages import STAGES, Resources
from preprocess.transit import NO_FRAMES, Item, from_row, to_row
from shards.config import load_config
from tests.media import read_frames
from tests.preprocess.ray_helpers import CPU_PRESET, job_overrides, with_audit_stage


def test_operators_fused_and_separate() -> None:
    lead, groups = split_lead(stage_groups(STAGES, fused=True))
    assert [s.name for s in lead] == ["encode"]  # in the decode task, where the frames are
    names = [[s.name for s in g] for g in groups]
    assert names == [["pose", "flow", "depth"], ["geometry", "pack"]]
    assert frame_readers(groups) == [True, False, False]  # pixels into the extractors only
    lead, groups = split_lead(stage_groups(STAGES, fused=False))
    names = [[s.name for s in g] for g in groups]
    assert names == [["pose"], ["flow"], ["depth"], ["geometry", "pack"]]
    assert frame_readers(groups) == [True, True, True, False, False]
    cfg = load_config(
        PreprocessConfig,
        CPU_PRESET,
        ["run.pose_actors=3", "run.pose_gpus=0.5", "run.flow_gpus=0.25", "run.depth_gpus=0.5"],
    )
    fused = split_lead(stage_groups(STAGES, fused=True))[1][0]
    # CPUs: 1 + 1 + 0.25; GPUs: 1.25 capped at one device; actors: the largest pool (pose).
    assert group_resources(fused, cfg.run) == Resources(2.25, 1.0, 3)
    cfg.run.fused_actors = 2
    assert group_resources(fused, cfg.run).actors == 2
    # decode (+ encode) 1 + 2 fused actors x 2.25 + one geometry/pack task 1
    assert cpus_needed(cfg.run, mode="fused") == 1 + 2 * 2.25 + 1
    cfg.run.inline_actors, cfg.run.inline_cpus = 3, 1.5
    assert cpus_needed(cfg.run, mode="inline") == 4.5  # inline: its actors only
    assert [s.name for s in model_run(with_audit_stage(before="geometry"))] == [
        "pose",
        "flow",
        "depth",
        "audit",
    ]


def test_fused_extractors_run_every_model_as_its_own_stage(vtest: Path, movenet_onnx: Path) -> None:
    cfg = load_config(PreprocessConfig, CPU_PRESET, job_overrides(movenet_onnx))
    frames = read_frames(vtest, 8)[:, ::2, ::2].copy()  # (8, 288, 384, 3)
    extract = FusedExtractors(cfg)
    assert extract.names == ["pose", "flow", "depth"]
    assert set(extract.backends()) == {"pose", "flow", "depth"}
    clip = extract(frames)
    assert clip.keypoints is not None and clip.keypoints.shape[0] == 8
    assert clip.flow is not None and clip.flow.shape == (8, 72, 96, 2)  # map: stored / 4
    assert np.all(clip.flow[0] == 0)  # F_0 = 0
    assert clip.depth is None  # the weightless heuristic has no map
    assert set(clip.seconds) == {"pose", "flow", "depth"}
    # A failure names its stage (flow gets frames of the wrong kind here).
    bad = frames_clip(frames[..., :2].copy())
    with pytest.raises(StageError) as info:
        extract.run(bad)
    assert info.value.stage in ("pose", "flow")


def test_transit_rows_carry_frames_as_arrays_and_count_bytes() -> None:
    frames = np.arange(4 * 6 * 8 * 3, dtype=np.uint8).reshape(4, 6, 8, 3)
    item = Item("clip", "v", "/v.mp4", 0.0, clip=frames_clip(frames), index=2)
    row = to_row(item)
    assert row["frames"] is frames  # the array itself: no copy, not pickled
    assert frames.tobytes() not in row["item"]
    assert item.store_bytes == row["stored"] == frames.nbytes + len(row["item"])
    back = from_row(row)
    np.testing.assert_array_equal(back.clip.frames, frames)  # type: ignore[union-attr]
    assert back.index == 2 and back.store_bytes == row["stored"]
    row2 = to_row(back)  # a second hop adds its own bytes
    assert row2["stored"] == 2 * frames.nbytes + len(row["item"]) + len(row2["item"])
    end = to_row(Item("end", "v", "/v.mp4", 0.0, index=3))
    assert end["frames"] is NO_FRAMES and pickle.loads(end["item"]).index == 3
    # After the last stage that reads them, the pixels stay behind; the count travels.
    row3 = to_row(back, keep_frames=False)
    assert row3["frames"] is NO_FRAMES and frames.tobytes() not in row3["item"]
    assert row3["stored"] == row2["stored"] + len(row3["item"])  # no pixel bytes counted
    light = from_row(row3)
    assert light.clip is not None and light.clip.frames.shape == (4, 0, 0, 3)
    assert light.clip.n_frames == 4 and light.clip.frames.nbytes == 0


def test_lost_work_is_told_from_a_bug() -> None:
    """What ends a pass and runs its videos again (Ray lost a node, an actor, an object) and
    what is re-raised (our own code failed: a bug, not retried)."""
    assert lost_work(ActorUnavailableError("an actor on a lost node had a block", None))
    assert lost_work(RayTaskError("map", "tb", ActorDiedError()))
    lost = ObjectLostError("00" * 28, b"owner", "call")
    assert lost_work(_raised(UserCodeException("wrapped"), lost))
    assert not lost_work(_raised(UserCodeException("a bug"), ValueError("x")))
    assert not lost_work(RayTaskError("map", "tb", ValueError("x")))
    assert not lost_work(ValueError("x"))


def _raised(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as got:
        return got


def test_the_extractors_import_without_the_video_codecs_or_ray() -> None:
    """The GPU machine (docs/gpu.md) has no decord, PyAV, Ray or WebDataset: the fused
    extractors and the stage table still import there (the codecs load in decode/encode)."""
    blocked = ("decord", "av", "ray", "webdataset")
    code = (
        "import sys\n"
        f"for m in {blocked!r}:\n    sys.modules[m] = None\n"
        "import preprocess.fused, preprocess.stages\n"
        "print('imported')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "imported" in run.stdout, run.stderr[-2000:]
