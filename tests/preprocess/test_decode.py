"""Decode stage on real videos: sizes, fps cap, clips, rotation, broken inputs."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import decord
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from preprocess.clip import Clip, video_id_for
from preprocess.config import DecodeConfig
from preprocess.cuts import CutDetector
from preprocess.decode import (
    DecodeError,
    _open_reader,
    _read_chunk,
    _usable_fps,
    iter_clips,
    probe_video,
    sample_indices,
    stored_size,
)
from shards.storage import write_bytes

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"


def _ffmpeg(*args: str | Path | int) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True)


def _h264(src: Path, dst: Path, frames: int, width: int, height: int) -> None:
    """The first ``frames`` frames of ``src`` scaled to width x height, H.264, no audio."""
    scale = f"scale={width}:{height}"
    _ffmpeg("-i", src, "-frames:v", frames, "-vf", scale, "-an", "-c:v", "libx264", dst)


def _ffmpeg_frames(
    path: Path, size: tuple[int, int], n: int, autorotate: bool = True
) -> np.ndarray:
    """The first ``n`` frames as ffmpeg displays them (its own autorotation), at (h, w)."""
    h, w = size
    flags = [] if autorotate else ["-noautorotate"]
    cmd = [FFMPEG, "-v", "error", *flags, "-i", str(path), "-frames:v", str(n)]
    cmd += ["-vf", f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(n, h, w, 3)


def _ffprobe_rotation(path: Path) -> int:
    """Counter-clockwise rotation of the display matrix as ffprobe reports it (0 if none)."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_streams", "-of", "json", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    side = json.loads(out)["streams"][0].get("side_data_list", [])
    return int(next((s["rotation"] for s in side if "rotation" in s), 0))


def _write_mp4(path: Path, frames: list[np.ndarray] | np.ndarray, fps: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


def _read_all(reader: decord.VideoReader, size: tuple[int, int]) -> None:
    for start in range(0, len(reader), 16):
        _read_chunk(reader, np.arange(start, min(start + 16, len(reader))), size)


def _decode(path: Path, cfg: DecodeConfig) -> list[Clip]:
    return list(iter_clips(probe_video(str(path), cfg), cfg))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def small_dance(tmp_path_factory: pytest.TempPathFactory, dance: Path) -> Path:
    """The first 24 frames of the dance video at 180x320 (portrait), H.264, no audio."""
    path = tmp_path_factory.mktemp("small") / "small.mp4"
    _h264(dance, path, frames=24, width=180, height=320)
    return path


# --- stored size and sampling (pure) ----------------------------------------------------


def test_stored_size_examples() -> None:
    assert stored_size(576, 768, 640, upscale=False) == (576, 768)  # small: kept
    assert stored_size(576, 768, 640, upscale=True) == (640, 854)  # 853.3 -> nearest even
    assert stored_size(1920, 1080, 640, upscale=False) == (1138, 640)  # 1137.8 -> 1138
    assert stored_size(577, 769, 640, upscale=False) == (576, 768)  # odd -> even, not up
    assert stored_size(720, 1280, 641, upscale=False) == (640, 1138)  # odd target -> even
    with pytest.raises(ValueError):
        stored_size(1, 100, 640, upscale=False)


@given(
    st.integers(2, 4000),
    st.integers(2, 4000),
    st.integers(2, 1200),
    st.booleans(),
)
def test_stored_size_properties(h: int, w: int, short_side: int, upscale: bool) -> None:
    out_h, out_w = stored_size(h, w, short_side, upscale)
    assert out_h % 2 == 0 and out_w % 2 == 0 and min(out_h, out_w) >= 2
    if min(h, w) > short_side or upscale:
        assert min(out_h, out_w) == short_side - short_side % 2
    else:
        assert (out_h, out_w) == (h - h % 2, w - w % 2)  # never upscaled
    if min(out_h, out_w) >= 16:  # aspect kept to rounding (one even step per side)
        assert abs((out_w / out_h) / (w / h) - 1) <= 2.5 / min(out_h, out_w)


def test_sample_indices_examples() -> None:
    assert sample_indices(5, 10.0, 30.0).tolist() == [0, 1, 2, 3, 4]  # below the cap
    assert sample_indices(288, 24.0, 12.0).tolist() == list(range(0, 288, 2))
    assert sample_indices(10, 30.0, 24.0).tolist() == [0, 1, 3, 4, 5, 6, 8, 9]
    assert sample_indices(288, 24.0, 12.0, max_frames=5).tolist() == [0, 2, 4, 6, 8]
    assert sample_indices(0, 24.0, 12.0).tolist() == []
    for bad in [(10, 0.0, 30.0), (10, 25.0, 0.0), (10, math.nan, 30.0)]:
        with pytest.raises(ValueError):
            sample_indices(*bad)


@given(st.integers(0, 3000), st.floats(1.0, 240.0), st.floats(1.0, 60.0), st.integers(0, 500))
def test_sample_indices_properties(n: int, src_fps: float, max_fps: float, max_frames: int) -> None:
    idx = sample_indices(n, src_fps, max_fps, max_frames)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert len(idx) == 0 or (idx[0] == 0 and idx[-1] < n)
    if max_frames:
        assert len(idx) <= max_frames
    fps = min(src_fps, max_fps)
    # Stored frame k shows the source frame nearest to time k / fps.
    times = np.arange(len(idx)) / fps
    assert np.all(np.abs(idx / src_fps - times) <= 0.5 / src_fps + 1e-9)
    if not max_frames:  # and no frame of the source's time span is skipped at the cap
        assert len(idx) >= math.floor((n - 1) * fps / src_fps + 1e-9) + (n > 0)


def test_absurd_frame_rates_fall_back_or_fail() -> None:
    assert _usable_fps(25.0, 30.0, 100, 4.0) == 25.0
    assert _usable_fps(0.0, 30.0, 100, 4.0) == 30.0  # 0 fps in the stream: PyAV's guess
    assert _usable_fps(90000.0, 0.0, 100, 4.0) == 25.0  # timebase-as-rate: frames / duration
    with pytest.raises(DecodeError, match="frame rate"):
        _usable_fps(math.nan, 0.0, 100, 0.0)


# --- probing real videos ----------------------------------------------------------------


def test_probe_vtest(vtest: Path) -> None:
    info = probe_video(str(vtest), DecodeConfig())
    assert (info.src_width, info.src_height, info.src_frames) == (768, 576, 795)
    assert info.src_fps == pytest.approx(10.0) and info.fps == pytest.approx(10.0)
    assert (info.width, info.height, info.rotation) == (768, 576, 0)  # small: not upscaled
    assert info.video_id == video_id_for(str(vtest)) and info.codec == "msmpeg4"


def test_probe_dance(dance: Path) -> None:
    info = probe_video(str(dance), DecodeConfig(max_fps=12))
    assert (info.src_width, info.src_height, info.src_frames) == (1080, 1920, 288)
    assert info.src_fps == pytest.approx(24.0) and info.fps == pytest.approx(12.0)
    assert (info.width, info.height, info.rotation, info.codec) == (640, 1138, 0, "h264")
    assert info.scale == pytest.approx(640 / 1080)


# --- clips from real videos -------------------------------------------------------------


def test_vtest_clips_are_exact_frames(vtest: Path) -> None:
    clips = _decode(vtest, DecodeConfig(max_frames=100))
    assert [c.index for c in clips] == [0, 1] and [c.n_frames for c in clips] == [64, 36]
    assert clips[0].source_frames.tolist() == list(range(64))
    assert clips[1].source_frames.tolist() == list(range(64, 100))
    assert clips[1].frames.shape == (36, 576, 768, 3) and clips[1].frames.dtype == np.uint8
    assert clips[1].key == f"{video_id_for(str(vtest))}_0000064"
    native = decord.VideoReader(str(vtest)).get_batch([0, 63, 64, 99]).asnumpy()
    got = [clips[0].frames[0], clips[0].frames[63], clips[1].frames[0], clips[1].frames[35]]
    np.testing.assert_array_equal(np.stack(got), native)  # stored size = source size


def test_dance_fps_cap_takes_every_other_frame(dance: Path) -> None:
    cfg = DecodeConfig(max_fps=12, max_frames=40, clip_frames=16, min_clip_frames=16)
    clips = _decode(dance, cfg)
    # 40 stored frames at 12 fps = source frames 0, 2, ..., 78; 16 + 16, tail of 8 dropped.
    assert [c.source_frames.tolist() for c in clips] == [
        list(range(0, 32, 2)),
        list(range(32, 64, 2)),
    ]
    assert all(c.frames.shape == (16, 1138, 640, 3) for c in clips)
    reference = _ffmpeg_frames(dance, (1138, 640), 64)
    for clip in clips:
        for frame, src in zip(clip.frames, clip.source_frames, strict=True):
            assert _mad(frame, reference[src]) < 3.0  # the right frame, upright, resized
    assert _mad(clips[1].frames[0], reference[32]) < _mad(clips[1].frames[0], reference[40])


def test_max_frames_bounds_the_video(vtest: Path) -> None:
    clips = _decode(vtest, DecodeConfig(max_frames=40, min_clip_frames=8))
    assert [c.n_frames for c in clips] == [40]
    assert _decode(vtest, DecodeConfig(max_frames=10)) == []  # shorter than min_clip_frames


def test_clips_never_cross_a_real_cut(tmp_path: Path, vtest: Path, dance: Path) -> None:
    size = (240, 320)
    street = decord.VideoReader(str(vtest), width=320, height=240).get_batch(range(30))
    dancer = decord.VideoReader(str(dance), width=180, height=320).get_batch(range(30))
    frames = [*street.asnumpy()]
    frames += [cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in dancer.asnumpy()]
    path = tmp_path / "two_shots.mp4"
    _write_mp4(path, frames, fps=10)
    cfg = DecodeConfig(clip_frames=16, min_clip_frames=8)
    clips = _decode(path, cfg)
    spans = [(int(c.source_frames[0]), int(c.source_frames[-1]) + 1) for c in clips]
    assert spans == [(0, 16), (16, 30), (30, 46), (46, 60)]  # the span rule at the cut
    detector = CutDetector(cfg.cut_threshold)  # and the decoded frames agree on the cut
    decoded = np.concatenate([c.frames for c in clips])
    assert [i for i, f in enumerate(decoded) if detector.update(f)] == [30]


def test_decoding_streams_in_small_chunks(vtest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = decord.VideoReader.get_batch

    def counting(self: decord.VideoReader, indices: list[int]) -> decord.nd.NDArray:
        calls.append(len(indices))
        return original(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", counting)
    cfg = DecodeConfig()  # the whole 795-frame video
    clips = iter_clips(probe_video(str(vtest), cfg), cfg)
    first = next(clips)
    assert first.n_frames == 64
    assert calls == [16, 16, 16, 16]  # the first clip needed 4 chunks, not the whole video
    next(clips)
    assert calls == [16] * 8


def test_narrow_video_widths_decord_garbles_are_decoded_right(tmp_path: Path, dance: Path) -> None:
    """decord 0.6.0 returns 4-channel garbage for some widths (72 here); we work around it."""
    path = tmp_path / "narrow.mp4"
    _h264(dance, path, frames=16, width=72, height=128)
    (clip,) = _decode(path, DecodeConfig())
    assert clip.frames.shape == (16, 128, 72, 3)
    # Decoded at 128 wide and resized back: a little blur on a tiny picture (measured 3.9),
    # where decord's garbled frames would not even have 3 channels.
    assert _mad(clip.frames, _ffmpeg_frames(path, (128, 72), 16)) < 6.0


def test_s3_video_is_read_through_shards_storage(s3_server: str, vtest: Path) -> None:
    """An s3:// source (the moto server) decodes to exactly the local file's clips."""
    uri = f"{s3_server}/videos/vtest.avi"
    write_bytes(uri, vtest.read_bytes())
    cfg = DecodeConfig(max_frames=20, min_clip_frames=8)
    info = probe_video(uri, cfg)
    assert (info.source, info.src_frames, info.width, info.height) == (uri, 795, 768, 576)
    (remote,) = list(iter_clips(info, cfg))
    (local,) = _decode(vtest, cfg)
    np.testing.assert_array_equal(remote.frames, local.frames)
    with pytest.raises(DecodeError, match="cannot read"):
        probe_video(f"{s3_server}/videos/missing.avi", cfg)


# --- rotation ---------------------------------------------------------------------------


@pytest.mark.parametrize("tag", [90, 180, 270])
def test_display_rotation_matches_ffmpeg(tmp_path: Path, small_dance: Path, tag: int) -> None:
    path = tmp_path / f"rotated_{tag}.mp4"
    _ffmpeg("-i", small_dance, "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", path)
    ccw = _ffprobe_rotation(path)
    assert ccw % 360 != 0  # the file really carries a display matrix
    cfg = DecodeConfig(min_clip_frames=8)
    info = probe_video(str(path), cfg)
    assert info.rotation == (-ccw) % 360  # clockwise, as VideoInfo documents
    expected_hw = (180, 320) if info.rotation in (90, 270) else (320, 180)
    assert (info.height, info.width) == (info.src_height, info.src_width) == expected_hw
    (clip,) = list(iter_clips(info, cfg))
    upright = _ffmpeg_frames(path, expected_hw, 24)  # ffmpeg's own autorotation
    assert _mad(clip.frames, upright) < 3.0
    # And it is not the unrotated picture (nor the opposite rotation).
    raw = _ffmpeg_frames(path, (320, 180), 24, autorotate=False)
    assert _mad(clip.frames, np.rot90(raw, k=-info.rotation // 90 + 2, axes=(1, 2))) > 10.0


# --- broken inputs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, small_dance: Path, vtest: Path) -> Path:
    folder = tmp_path_factory.mktemp("broken")
    data = small_dance.read_bytes()
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (folder / "notes.txt").write_text("this folder holds the videos of the shoot\n")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov atom at the end
    _ffmpeg("-i", small_dance, "-c", "copy", "-movflags", "+faststart", folder / "fast.mp4")
    fast = (folder / "fast.mp4").read_bytes()
    (folder / "truncated_faststart.mp4").write_bytes(fast[: len(fast) // 2])
    (folder / "truncated_late.mp4").write_bytes(fast[: len(fast) * 9 // 10])
    avi = vtest.read_bytes()
    (folder / "truncated.avi").write_bytes(avi[: len(avi) // 2])
    _ffmpeg("-i", small_dance, "-c", "copy", folder / "full.mkv")
    mkv = (folder / "full.mkv").read_bytes()
    (folder / "truncated.mkv").write_bytes(mkv[: len(mkv) // 2])
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", folder / "audio.m4a")
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", 1, folder / "cover.png")
    inputs: list[str | Path] = ["-f", "lavfi", "-i", "sine=duration=1", "-i", folder / "cover.png"]
    as_cover = ["-map", "0", "-map", "1", "-c:v", "png", "-disposition:v:0", "attached_pic"]
    _ffmpeg(*inputs, *as_cover, "-c:a", "aac", folder / "song_with_cover.m4a")
    return folder


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("zero.mp4", "zero-byte file"),
        ("random.mp4", "not a video"),
        ("notes.txt", "not a video"),
        ("truncated.mp4", "not a video, or a damaged container"),
        ("truncated_faststart.mp4", "damaged or truncated"),
        ("truncated_late.mp4", "damaged or truncated video: the file ends in the middle"),
        ("truncated.avi", "truncated: the container announces 795 frames, only 3.. frames"),
        ("truncated.mkv", "truncated: the container announces 1.0 s"),
        ("audio.m4a", r"no video stream \(streams: audio\)"),
        ("song_with_cover.m4a", r"no video stream \(streams: audio, cover art\)"),
        ("missing.mp4", "no such file"),
    ],
)
def test_broken_inputs_raise_clear_errors(
    broken: Path, name: str, message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = DecodeConfig(min_clip_frames=1)
    with pytest.raises(DecodeError, match=message):
        _decode(broken / name, cfg)
    assert capfd.readouterr().err == ""  # no decord/ffmpeg noise on stderr


def test_corrupt_data_mid_video_raises_while_streaming(tmp_path: Path, small_dance: Path) -> None:
    """Garbage over 70-75 % of the file: the header and first frames are fine, so probing
    passes; decoding must fail when it gets there instead of ending the video early."""
    data = bytearray(small_dance.read_bytes())
    start, end = len(data) * 70 // 100, len(data) * 75 // 100
    data[start:end] = np.random.default_rng(0).bytes(end - start)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    cfg = DecodeConfig(clip_frames=4, min_clip_frames=1)
    info = probe_video(str(path), cfg)
    assert info.src_frames == 24
    with pytest.raises(DecodeError, match="corrupt video data"):
        list(iter_clips(info, cfg))


def test_complete_files_of_the_broken_set_decode(broken: Path) -> None:
    """The untruncated originals decode in full: the checks above are not trigger-happy."""
    cfg = DecodeConfig(min_clip_frames=1)
    for name in ("fast.mp4", "full.mkv"):
        assert sum(c.n_frames for c in _decode(broken / name, cfg)) == 24, name


def test_streams_decord_cannot_read_raise_instead_of_lying(
    tmp_path: Path, dance: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """decord 0.6.0 starts this (valid) MPEG-TS file at its second keyframe (frame 250) and
    pads the end with copies of the last frame: that must be an error, never wrong frames."""
    _h264(dance, tmp_path / "video.mp4", frames=288, width=90, height=160)
    path = tmp_path / "video.ts"
    _ffmpeg("-i", tmp_path / "video.mp4", "-c", "copy", path)
    cfg = DecodeConfig(max_frames=32, min_clip_frames=1)
    try:
        clips, error = _decode(path, cfg), ""
    except DecodeError as err:
        clips, error = [], str(err)
    if error:  # decord 0.6.0
        assert "decord cannot seek this stream" in error
        assert capfd.readouterr().err == ""
        # Reading on regardless, decord runs out of real frames and substitutes copies:
        # our reader makes that an error too.
        reader = _open_reader(str(path), (160, 90))
        with pytest.raises(DecodeError, match="could not be decoded"):
            _read_all(reader, (160, 90))
        return
    upright = _ffmpeg_frames(path, (160, 90), 32)  # a fixed decord must give real frames
    assert _mad(np.concatenate([c.frames for c in clips]), upright) < 3.0
