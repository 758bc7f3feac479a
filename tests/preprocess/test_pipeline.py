"""End to end: real videos through ``python -m preprocess`` into shards that validate.

The camera-shake test is the issue's acceptance check of the background-flow statistic: the
real static-camera vtest.avi, shaken by random-direction translations of a fixed step s px
per frame (centre-cropped so no border fill shows), must measure bg_flow_mean within 10% of
s; unshaken it must stay below 0.6 px. The stage-table tests add a stage to
``preprocess.stages.STAGES`` (one entry) and check that the in-process run times it, reports
its failures, and cuts it off at the video's deadline (test_ray_job.py does the same on Ray).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest

from preprocess import stages
from preprocess.__main__ import main as preprocess_main
from preprocess.clip import Clip
from preprocess.config import PreprocessConfig
from preprocess.pipeline import run
from preprocess.pose.precomputed import write_sidecar
from preprocess.runner import ConfigMismatchError
from preprocess.stages import SECONDS_COLUMNS, Resources, Stage, stage_names
from shards.__main__ import main as shards_main
from shards.config import load_config
from shards.reader import iter_samples, read_clips, read_videos
from tests.preprocess.ray_helpers import with_audit_stage

REPO = Path(__file__).resolve().parents[2]
CPU_PRESET = REPO / "jobs" / "preprocess" / "cpu_fast.yaml"  # MoveNet MultiPose: fast
MARGIN = 24  # crop margin of the shake, in source pixels


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        assert ok, f"could not read {n} frames from {path}"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10, crf: int = 12) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def shake_offsets(n: int, step: float, limit: float, seed: int) -> np.ndarray:
    """Random walk with steps of exactly ``step`` px in random directions, kept in +-limit."""
    rng = np.random.default_rng(seed)
    pos = [np.zeros(2)]
    while len(pos) < n:
        angle = rng.uniform(0, 2 * np.pi)
        nxt = pos[-1] + step * np.array([np.cos(angle), np.sin(angle)])
        if np.all(np.abs(nxt) <= limit):
            pos.append(nxt)
    return np.stack(pos)


def shaken(frames: list[np.ndarray], step: float, seed: int = 0) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    offsets = (
        shake_offsets(len(frames), step, MARGIN - 2, seed) if step else np.zeros((len(frames), 2))
    )
    out = []
    for f, (dx, dy) in zip(frames, offsets, strict=True):
        m = np.float32([[1, 0, -(MARGIN + dx)], [0, 1, -(MARGIN + dy)]])
        out.append(cv2.warpAffine(f, m, (w - 2 * MARGIN, h - 2 * MARGIN), flags=cv2.INTER_LINEAR))
    return out


@pytest.fixture(scope="module")
def vtest_frames(vtest: Path) -> list[np.ndarray]:
    return read_frames(vtest, 48)


@pytest.mark.slow
def test_camera_shake_is_measured_as_background_flow(
    tmp_path: Path, vtest_frames: list[np.ndarray], movenet_onnx: Path
) -> None:
    step = 6.0
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "shaken.mp4", shaken(vtest_frames, step))
    write_mp4(videos / "still.mp4", shaken(vtest_frames, 0.0))
    out = tmp_path / "out"
    code = preprocess_main(
        [
            "--config",
            str(CPU_PRESET),
            "--input",
            str(videos),
            "--output",
            str(out),
            f"pose.model={movenet_onnx}",
            "run.runner=local",  # the in-process run (the Ray job has tests/preprocess/test_ray_*)
        ]
    )
    assert code == 0
    clips = read_clips(out).to_pandas()
    videos_table = read_videos(out).to_pandas()
    assert set(videos_table.status) == {"ok"}
    # Stored size = crop size (720x528: short side < 640, not upscaled), so s stays s.
    assert set(clips.width) == {768 - 2 * MARGIN} and set(clips.height) == {576 - 2 * MARGIN}
    by_name = {Path(s).name: g for s, g in clips.groupby("source")}
    shake, still = by_name["shaken.mp4"], by_name["still.mp4"]
    print(  # shown with pytest -rP: the figures of the acceptance check
        f"shake s={step}: bg_flow_mean {shake.bg_flow_mean.round(3).tolist()}; "
        f"still: {still.bg_flow_mean.round(3).tolist()}; "
        f"characters_max {clips.characters_max.max()}"
    )
    for value in shake.bg_flow_mean:
        assert abs(value - step) / step < 0.10, f"bg_flow_mean {value:.3f} vs shake {step}"
    assert (still.bg_flow_mean < 0.6).all(), still.bg_flow_mean.tolist()
    assert clips.characters_max.max() >= 2
    assert shards_main(["validate", str(out)]) == 0


def test_broken_inputs_become_failed_rows(
    tmp_path: Path, vtest_frames: list[np.ndarray], movenet_onnx: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "good.mp4", vtest_frames[:32])
    data = (videos / "good.mp4").read_bytes()
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (videos / "notes.txt").write_text("this folder holds the videos of the shoot\n")
    out = tmp_path / "out"
    summary = run(
        [str(videos)],
        out,
        load_config(PreprocessConfig, CPU_PRESET, [f"pose.model={movenet_onnx}"]),
    )
    rows = {Path(r["source"]).name: r for r in read_videos(out).to_pylist()}
    assert set(rows) == {"good.mp4", "zero.mp4", "random.mp4", "truncated.mp4", "notes.txt"}
    assert rows["good.mp4"]["status"] == "ok" and rows["good.mp4"]["n_clips"] >= 1
    for name in ("zero.mp4", "random.mp4", "truncated.mp4", "notes.txt"):
        assert rows[name]["status"] == "failed", name
        assert rows[name]["error_stage"] == "decode", rows[name]
        assert rows[name]["error"], name
    assert summary.status == {"ok": 1, "failed": 4}
    assert set(read_clips(out).column("video_id").to_pylist()) == {rows["good.mp4"]["video_id"]}
    assert shards_main(["validate", str(out)]) == 0
    assert not list(out.rglob("*.tmp"))


def test_failure_after_decoding_leaves_nothing_in_shards(
    tmp_path: Path, vtest_frames: list[np.ndarray]
) -> None:
    """precomputed poses: the video without a sidecar decodes fine, then fails at pose."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "with_poses.mp4", vtest_frames[:20])
    write_mp4(videos / "without_poses.mp4", vtest_frames[20:40])
    keypoints = np.zeros((20, 2, 17, 3), np.float32)
    keypoints[:, 0, :, :2] = np.linspace(100, 300, 17)[None, :, None]
    keypoints[:, 1, :, :2] = np.linspace(400, 600, 17)[None, :, None]
    keypoints[..., 2] = 0.9
    write_sidecar(videos / "with_poses.pose.npz", keypoints)
    out = tmp_path / "out"
    cfg = load_config(PreprocessConfig, CPU_PRESET, ["pose.backend=precomputed"])
    run([str(videos)], out, cfg)
    rows = {Path(r["source"]).name: r for r in read_videos(out).to_pylist()}
    assert rows["without_poses.mp4"]["status"] == "failed"
    assert rows["without_poses.mp4"]["error_stage"] == "pose"
    assert rows["with_poses.mp4"]["status"] == "ok"
    samples = list(iter_samples(out))
    assert {s.meta["video_id"] for s in samples} == {rows["with_poses.mp4"]["video_id"]}
    assert samples[0].pose.shape == (20, 2, 133, 3)
    np.testing.assert_allclose(samples[0].pose[:, :, :17], keypoints, atol=1e-4)
    assert shards_main(["validate", str(out)]) == 0


def test_rerun_skips_done_videos_and_keys_are_stable(
    tmp_path: Path, vtest_frames: list[np.ndarray], movenet_onnx: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "a.mp4", vtest_frames[:40])
    cfg = load_config(
        PreprocessConfig, CPU_PRESET, [f"pose.model={movenet_onnx}", "decode.clip_frames=20"]
    )
    first = run([str(videos)], tmp_path / "one", cfg)
    assert first.status == {"ok": 1} and first.clips == 2
    again = run([str(videos)], tmp_path / "one", cfg)
    assert again.skipped_done == 1 and again.clips == 0
    assert read_clips(tmp_path / "one").num_rows == 2  # nothing duplicated

    other = run([str(videos)], tmp_path / "two", cfg)
    assert other.clips == 2
    keys = [sorted(read_clips(tmp_path / d).column("key").to_pylist()) for d in ("one", "two")]
    assert keys[0] == keys[1]

    changed = load_config(
        PreprocessConfig, CPU_PRESET, [f"pose.model={movenet_onnx}", "flow.preset=fast"]
    )
    with pytest.raises(ConfigMismatchError, match=r"flow\.preset: 'medium' -> 'fast'"):
        run([str(videos)], tmp_path / "one", changed)


def test_clip_metadata_carries_config_and_backends(
    tmp_path: Path, vtest_frames: list[np.ndarray], movenet_onnx: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "a.mp4", vtest_frames[:16])
    out = tmp_path / "out"
    cfg = load_config(PreprocessConfig, CPU_PRESET, [f"pose.model={movenet_onnx}"])
    run([str(videos)], out, cfg)
    (sample,) = list(iter_samples(out))
    meta = sample.meta
    assert meta["config"]["pose"]["model"] == str(movenet_onnx)
    assert meta["backends"]["pose"]["name"] == "movenet"
    assert len(meta["backends"]["pose"]["sha256"]) == 64
    assert meta["source"] == str((videos / "a.mp4").resolve())
    assert meta["source_frames"] == list(range(16))
    assert json.loads(json.dumps(meta)) == meta
    assert (out / "config.yaml").is_file()
    table = ds.dataset(out / "stats" / "clips", format="parquet").to_table()
    assert table.column("key").to_pylist() == [sample.key]


# --- the stage table ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_videos(vtest_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ok.mp4`` and ``bad.mp4``: 16 small real frames each, with pose sidecars (no model)."""
    folder = tmp_path_factory.mktemp("tiny")
    small = [cv2.resize(f, (192, 144), interpolation=cv2.INTER_AREA) for f in vtest_frames]
    keypoints = np.zeros((16, 1, 17, 3), np.float32)
    keypoints[:, 0, :, :2] = np.linspace(40, 120, 17)[None, :, None]
    keypoints[..., 2] = 0.9
    for name, frames in (("ok", small[:16]), ("bad", small[16:32])):
        write_mp4(folder / f"{name}.mp4", frames)
        write_sidecar(folder / f"{name}.pose.npz", keypoints)
    return folder


def tiny_config(*overrides: str) -> PreprocessConfig:
    fast = ["pose.backend=precomputed", "flow.preset=ultrafast", "shards.x264_preset=ultrafast"]
    return load_config(PreprocessConfig, CPU_PRESET, [*fast, "run.runner=local", *overrides])


def test_the_table_names_the_clip_rows_seconds_columns() -> None:
    """Every ``seconds_NAME`` column is a stage's (``pack``, the cheap packing of the
    sample's fields, has none: its time is in the run summary)."""
    assert {f"seconds_{n}" for n in stage_names()} - {"seconds_pack"} == SECONDS_COLUMNS
    assert stage_names()[:2] == ("decode", "encode") and stage_names()[-1] == "pack"


def test_a_stage_added_to_the_table_runs_in_process(
    tiny_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stages, "STAGES", with_audit_stage(before="geometry"))
    summary = run([str(tiny_videos)], tmp_path / "out", tiny_config())
    rows = {Path(r["source"]).name: r for r in read_videos(tmp_path / "out").to_pylist()}
    assert rows["ok.mp4"]["status"] == "ok"
    assert (rows["bad.mp4"]["error_stage"], rows["bad.mp4"]["error"]) == (
        "audit",
        "ValueError: planted failure",
    )
    assert summary.reasons() == {("audit", "ValueError"): 1}
    assert list(summary.stage_seconds)[4:7] == ["depth", "audit", "geometry"]
    assert summary.stage_seconds["audit"] >= 0.02  # timed like every stage: one clip, 20 ms
    assert "audit " in summary.format()
    (row,) = read_clips(tmp_path / "out").to_pylist()  # the stage times in the clip's row
    assert all(row[f"seconds_{n}"] > 0 for n in ("decode", "flow", "geometry", "encode"))
    assert shards_main(["validate", str(tmp_path / "out")]) == 0


STALL = threading.Event()


class StallStage:
    """A model stage that hangs on the clips of ``bad.mp4`` (until released)."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        pass

    def backends(self) -> dict[str, object]:
        return {}

    def __call__(self, clip: Clip) -> Clip:
        if Path(clip.video.source).name == "bad.mp4":
            STALL.wait(60)
        return clip


def test_a_hanging_model_stage_is_cut_off_at_the_video_deadline(
    tiny_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stall = Stage("stall", lambda r: Resources(1.0, actors=1), model=StallStage)
    monkeypatch.setattr(stages, "STAGES", (stall, *stages.STAGES))
    try:
        summary = run([str(tiny_videos)], tmp_path / "out", tiny_config("run.video_timeout_s=4"))
        # The stall is still unreleased here: only the deadline can have ended bad.mp4.
    finally:
        STALL.set()
    rows = {Path(r["source"]).name: r for r in read_videos(tmp_path / "out").to_pylist()}
    assert rows["ok.mp4"]["status"] == "ok"
    bad = rows["bad.mp4"]
    assert (bad["status"], bad["error_stage"]) == ("failed", "stall"), bad
    assert bad["error"].startswith("timeout: the video's 4 s limit"), bad
    assert bad["seconds"] > 0
    assert summary.status == {"ok": 1, "failed": 1} and summary.clips == 1
