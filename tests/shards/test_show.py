"""``python -m shards show``: colours against hand-derived values, per-frame series against a
hand-built clip, and the files on a local and an ``s3://`` output (reading only the shards
that hold the shown clips)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.fs as pafs
import pytest

import shards.reader
from preprocess.geometry import GeometryConfig, clip_geometry
from preprocess.geometry.render import render_pose
from shards.__main__ import main
from shards.colors import RANK_COLORS, TRACK_COLORS, flow_to_color, order_to_color
from shards.reader import read_clips
from shards.schema import Sample
from shards.show import draw_skeletons, frame_series
from shards.storage import filesystem, read_bytes
from shards.video import decode_h264, read_video
from tests.shards.test_cli import undocumented
from tests.train.helpers import person, write_train_output

VIDEOS = [[1, 2], [3, 1, 1], [2, 2], [1]]  # people per clip; 3 clips per shard -> 3 shards


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("show_out")
    write_train_output(root, VIDEOS)
    return root


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The shard files the reader opens (``shards.reader`` streams every tar through it)."""
    seen: list[str] = []
    real = shards.reader.open_input

    def spy(path: str) -> object:
        seen.append(Path(str(path)).name)
        return real(path)

    monkeypatch.setattr(shards.reader, "open_input", spy)
    return seen


# -- colours ---------------------------------------------------------------------------------


def test_flow_colours_are_the_middlebury_wheel() -> None:
    # Expected values worked out by hand from colorcode.cpp's wheel (RY 15, YG 6, GC 4, CB 11,
    # BM 13, MR 6) and its fk = (atan2(-v, -u) / pi + 1) / 2 * (55 - 1).
    flow = np.array([[[-1, 0], [0, 1], [0, -1], [0, 0], [-0.5, 0], [-2, 0]]], np.float32)
    got = flow_to_color(flow, max_radius=1.0)[0].astype(int)
    left = [0, 209, 255]  # fk = 27: cyan->blue step 2, g = 255 - floor(255 * 2 / 11)
    down = [255, 229, 0]  # fk = 13.5: red->yellow between g = 221 and 238
    up = [88, 0, 255]  # fk = 40.5: blue->magenta between r = 78 and 98
    assert np.abs(got[0] - left).max() <= 1
    assert np.abs(got[1] - down).max() <= 1
    assert np.abs(got[2] - up).max() <= 1
    assert got[3].tolist() == [255, 255, 255]  # no motion: white
    assert np.abs(got[4] - [127, 232, 255]).max() <= 1  # half radius: halfway to white
    assert np.abs(got[5] - np.floor(0.75 * np.array(left))).max() <= 1  # beyond r: darkened
    twice = flow_to_color(flow * 2, max_radius=2.0)
    assert np.array_equal(twice, flow_to_color(flow, 1.0))  # only |F| / r matters


def test_depth_order_colours_by_rank() -> None:
    order = np.array([[0, 255, 191, 128, 64, 100]], np.uint8)  # K = 4: ranks 0, 1, 2, 3+
    got = order_to_color(order, levels=4)[0]
    assert got[0].tolist() == [0, 0, 0]
    assert [tuple(c) for c in got[1:5].tolist()] == list(RANK_COLORS)
    assert got[5].tolist() == [255, 255, 255]  # a value no rank has


def test_each_track_is_drawn_by_the_pose_renderer_in_its_own_colour() -> None:
    frame_size, size = (96, 128), (96, 128)
    pose = np.stack([person(30, 90, 70), person(95, 90, 70)])  # (2, 133, 3), apart
    frame = np.zeros((*size, 3), np.uint8)
    drawn = draw_skeletons(frame, pose, frame_size, 0.3)
    for p in (0, 1):
        alone = render_pose(pose[p : p + 1], frame_size, size, 0.3).max(-1) > 0  # (h, w)
        assert alone.sum() > 50
        pixels = drawn[alone].astype(float)  # (N, 3)
        assert (pixels.sum(-1) > 0).all()  # everything the renderer draws is painted
        color = np.array(TRACK_COLORS[p], float)
        cos = pixels @ color / (np.linalg.norm(pixels, axis=1) * np.linalg.norm(color))
        assert cos.min() > 0.99, (p, cos.min())  # ... in this track's colour only
    assert drawn[:, 64:][drawn[:, 64:].sum(-1) > 0].std(0).max() > 0  # shaded, not flat


# -- per-frame series ------------------------------------------------------------------------


def test_frame_series_of_a_hand_built_clip() -> None:
    h, w, mh, mw = 192, 256, 48, 64
    pose = np.zeros((4, 2, 133, 3), np.float32)
    pose[1, 0] = pose[1, 1] = person(128, 176, 144)  # two people in one place: occlusion 1
    pose[2, 0], pose[2, 1] = person(32, 176, 144), person(224, 176, 144)  # far apart: 0
    pose[3, 0], pose[3, 1] = person(112, 176, 144), person(144, 160, 120)  # in part
    mask = np.zeros((4, mh, mw), bool)
    mask[:, :, :32] = True  # the stored union: the left half
    flow = np.zeros((4, mh, mw, 2), np.float32)
    flow[1:, :, :, 0], flow[1:, :, :, 1] = 3.0, 4.0  # |F| = 5 in the background ...
    flow[1:, :, :32] = 100.0  # ... and large under the mask, which must not count
    sample = Sample(
        key="k_0000000", frames=np.zeros((4, h, w, 3), np.uint8), fps=10.0, pose=pose,
        flow=flow, mask=mask, order=np.zeros((4, mh, mw), np.uint8),
        ranks=np.full((4, 2), -1, np.int8),
    )  # fmt: skip
    cfg = GeometryConfig()
    series = frame_series(sample, cfg)
    assert np.isnan(series["bg_flow"][0])  # F_0 is not a flow
    assert series["bg_flow"][1:] == pytest.approx([5.0, 5.0, 5.0])
    assert series["characters"].tolist() == [0, 2, 2, 2]
    assert np.isnan(series["occlusion"][0])
    # The partial overlap as the clips table defines it (clip_geometry: its own rasteriser).
    table = clip_geometry(pose[3:], flow[3:], (h, w), cfg).stats["occlusion_rate_mean"]
    assert table is not None and 0.1 < table < 0.9
    assert series["occlusion"][1:] == pytest.approx([1.0, 0.0, table])


# -- the command -----------------------------------------------------------------------------


def png(path: Path | str) -> np.ndarray:
    data = np.frombuffer(read_bytes(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def test_show_reads_only_the_shards_holding_the_clips(
    output: Path, tmp_path: Path, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    copy = Path(shutil.copytree(output, tmp_path / "out"))
    clips = read_clips(copy)
    key = clips["key"][4].as_py()  # a clip of the second shard
    holder = clips["shard"][4].as_py()
    for tar in (copy / "shards").glob("*.tar"):
        if tar.name != holder:
            tar.write_bytes(b"garbage: reading this shard would fail")
    code = main(["show", str(copy), "--key", key, "--out", str(tmp_path / "v"), "--height", "64"])
    assert code == 0
    assert opened == [holder]
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "v" / f"{key}.{e}") for e in ("png", "mp4")
    ]
    sheet = png(tmp_path / "v" / f"{key}.png")
    assert sheet.shape[1] >= 4 * 84 and sheet.std() > 10  # four panels of 86x64, not blank
    frames, fps = read_video(tmp_path / "v" / f"{key}.mp4")
    assert len(frames) == 8 and fps == pytest.approx(25.0)  # the whole 8-frame clip
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0


def test_show_where_limit_and_options(
    output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = "characters_max >= 2"
    argv = ["show", str(output), "--where", where, "--limit", "2", "--out", str(tmp_path)]
    assert main([*argv, "--no-video", "--rows", "3", "--height", "48"]) == 0
    expected = read_clips(output, where=where)["key"].to_pylist()[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{k}.png" for k in expected)
    tall = png(tmp_path / f"{expected[0]}.png").shape[0]
    assert main([*argv, "--no-video", "--rows", "6", "--height", "48"]) == 0
    assert png(tmp_path / f"{expected[0]}.png").shape[0] - tall == 3 * (48 + 4)  # 3 more rows
    five = read_clips(output)["key"].to_pylist()[-5:]  # named keys: all of them by default
    named = [a for k in five for a in ("--key", k)]
    assert main(["show", str(output), *named, "--out", str(tmp_path / "5"), "--no-video"]) == 0
    assert sorted(p.stem for p in (tmp_path / "5").iterdir()) == sorted(five)
    assert main(["show", str(output), "--key", "nope_0000000", "--out", str(tmp_path)]) == 2
    assert "nope_0000000" in capsys.readouterr().err


def test_show_on_s3(
    output: Path, s3_server: str, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fs, path = filesystem(f"{s3_server}/outputs/show")
    pafs.copy_files(str(output), path, destination_filesystem=fs)
    remote = f"{s3_server}/outputs/show"
    clips = read_clips(output)
    key = clips["key"][-1].as_py()
    target = f"{s3_server}/previews"
    assert main(["show", remote, "--key", key, "--out", target, "--max-frames", "4"]) == 0
    assert opened == [clips["shard"][-1].as_py()]
    assert png(f"{target}/{key}.png").std() > 10
    frames, _ = decode_h264(read_bytes(f"{target}/{key}.mp4"))
    assert len(frames) == 4  # --max-frames


@pytest.mark.parametrize("command", ["show", "browse"])
def test_help_explains_every_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert undocumented(text) == [] and "s3://" in text, text
