"""Round trips that pin every field's encoding (shards/codec.py)."""

from __future__ import annotations

import io
import json
import zipfile
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shards import codec
from shards.schema import FIELDS, REQUIRED_FIELDS
from tests.shards.synthetic import clip_key, make_sample, natural_frames, video_id

KEY = clip_key(video_id(7), 0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


# -- mp4 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "fps"), [(1, 30.0), (8, 25.0), (8, 12.5), (5, 30000 / 1001), (3, 29.97)]
)
def test_frames_keep_count_size_and_fps(t: int, fps: float) -> None:
    frames = natural_frames(t, 48, 64)
    data = codec.encode_frames(frames, fps, preset="ultrafast")
    decoded, got_fps = codec.decode_frames(data)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert got_fps == float(codec.fps_fraction(fps))
    assert abs(got_fps - fps) < 1e-6


def test_mp4_is_h264_yuv420p_with_the_rate_in_the_stream() -> None:
    data = codec.encode_frames(natural_frames(4, 48, 64), 30000 / 1001)
    assert data[4:8] == b"ftyp"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == Fraction(30000, 1001)


def test_mp4_quality_on_a_natural_clip_and_crf_is_applied() -> None:
    frames = natural_frames(8, 48, 64)
    high = codec.encode_frames(frames, 25.0, crf=18)
    low = codec.encode_frames(frames, 25.0, crf=35)
    assert psnr(codec.decode_frames(high)[0], frames) > 35.0
    assert psnr(codec.decode_frames(low)[0], frames) < 33.0
    assert len(low) < len(high)


def test_mp4_quality_on_real_video(vtest: Path) -> None:
    with av.open(str(vtest)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in islice(container.decode(video=0), 8)]
    clip = np.ascontiguousarray(np.stack(frames)[:, 200:296, 300:428])  # 128x96 crop with people
    decoded, _ = codec.decode_frames(codec.encode_frames(clip, 10.0, crf=18))
    assert psnr(decoded, clip) > 38.0


@pytest.mark.parametrize("shape", [(4, 47, 64, 3), (4, 48, 63, 3)])
def test_odd_frame_sizes_are_refused_clearly(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="even frame sizes"):
        codec.encode_frames(np.zeros(shape, np.uint8), 25.0)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 48, 64, 3), np.float32), "uint8"),
        (np.zeros((48, 64, 3), np.uint8), "RGB"),
        (np.zeros((0, 48, 64, 3), np.uint8), "RGB"),
    ],
)
def test_bad_frames_are_refused(frames: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        codec.encode_frames(frames, 25.0)


# -- arrays ------------------------------------------------------------------------------------


def test_pose_and_ranks_round_trip_exactly() -> None:
    s = make_sample(KEY)
    pose = codec.decode_pose(codec.encode_pose(s.pose.astype(np.float64)))
    assert pose.dtype == np.float32
    np.testing.assert_array_equal(pose, s.pose)
    ranks = codec.decode_ranks(codec.encode_ranks(s.ranks.astype(np.int64)))
    assert ranks.dtype == np.int8 and (ranks == -1).any()
    np.testing.assert_array_equal(ranks, s.ranks)


def test_decoders_refuse_other_stored_dtypes() -> None:
    with pytest.raises(ValueError, match="float64, expected float32"):
        codec.decode_pose(codec.encode_npy(np.zeros((2, 1, 133, 3))))
    with pytest.raises(ValueError, match="shape"):
        codec.decode_pose(codec.encode_npy(np.zeros((2, 1, 17, 3), np.float32)))
    with pytest.raises(ValueError, match="float32, expected float16"):
        codec.decode_flow(codec.encode_npz(np.zeros((2, 4, 4, 2), np.float32)))


finite16 = st.floats(-65504, 65504, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_flow_float16_error_bound(data: st.DataObject) -> None:
    shape = (*data.draw(hnp.array_shapes(min_dims=3, max_dims=3, max_side=4)), 2)
    flow = data.draw(hnp.arrays(np.float32, shape, elements=finite16))
    raw = codec.encode_flow(flow)
    assert codec.decode_npz(raw).dtype == np.float16
    back = codec.decode_flow(raw)
    assert back.dtype == np.float32 and back.shape == flow.shape
    bound = np.maximum(np.abs(flow) * codec.FLOAT16_REL_ERROR, codec.FLOAT16_ABS_ERROR_SUBNORMAL)
    assert (np.abs(back - flow) <= bound).all()


def test_flow_bound_is_tight_and_range_is_enforced() -> None:
    flow = np.full((1, 1, 1, 2), 1.0 + 2.0**-11, np.float32)  # halfway between float16 values
    err = np.abs(codec.decode_flow(codec.encode_flow(flow)) - flow).max()
    assert err == pytest.approx(2.0**-11, rel=1e-3)
    with pytest.raises(ValueError, match="float16 range"):
        codec.encode_flow(np.full((1, 2, 2, 2), 7e4, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        codec.encode_flow(np.full((1, 2, 2, 2), np.nan, np.float32))


def test_npz_fields_are_one_deflated_array_numpy_reads() -> None:
    """``encode_npz`` writes what ``np.savez_compressed`` writes (one ``arr_0.npy`` member,
    deflated), at ``codec.DEFLATE_LEVEL``: numpy's own reader gets the array back."""
    array = np.tile(np.arange(64, dtype=np.float16), (8, 4))  # compressible
    data = codec.encode_npz(array)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        (member,) = archive.infolist()
        assert member.filename == "arr_0.npy" and member.compress_type == zipfile.ZIP_DEFLATED
        assert member.compress_size < member.file_size / 4
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        np.testing.assert_array_equal(loaded["arr_0"], array)


def test_flow_step_rounds_to_a_grid_and_compresses() -> None:
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 0.05, (4, 24, 32, 2)).astype(np.float32)  # still background: noise
    flow[:, 8:16, 10:20] += np.array([2.5, -1.0], np.float32)  # a walking person
    exact, coarse = codec.encode_flow(flow), codec.encode_flow(flow, step=1 / 32)
    back = codec.decode_flow(coarse)
    assert np.abs(back - flow).max() <= 1 / 64 + np.abs(flow).max() * codec.FLOAT16_REL_ERROR
    np.testing.assert_array_equal(back * 32, np.round(back * 32))  # on the 1/32 px grid
    assert len(coarse) < 0.5 * len(exact)
    with pytest.raises(ValueError, match="step"):
        codec.encode_flow(flow, step=0)


def test_depth_is_float16_in_unit_range() -> None:
    depth = make_sample(KEY).depth
    assert depth is not None
    back = codec.decode_depth(codec.encode_depth(depth))
    assert back.dtype == np.float32
    assert np.abs(back - depth).max() <= 2.0**-11
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        codec.encode_depth(depth * 2 + 0.1)


def test_mask_and_order_round_trip_exactly_as_uint8() -> None:
    s = make_sample(KEY)
    raw = codec.encode_mask(s.mask)
    assert codec.decode_npz(raw).dtype == np.uint8
    assert set(np.unique(codec.decode_npz(raw))) <= {0, 1}
    mask = codec.decode_mask(raw)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, s.mask)
    np.testing.assert_array_equal(codec.decode_mask(codec.encode_mask(s.mask.astype(int))), s.mask)
    order = codec.decode_order(codec.encode_order(s.order.astype(np.int32)))
    assert order.dtype == np.uint8
    np.testing.assert_array_equal(order, s.order)


def test_integer_fields_refuse_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="0/1"):
        codec.encode_mask(np.full((1, 2, 2), 2))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        codec.encode_order(np.full((1, 2, 2), 300))
    with pytest.raises(ValueError, match=">= -1"):
        codec.encode_ranks(np.full((1, 2), -2))
    with pytest.raises(ValueError, match="integers"):
        codec.encode_order(np.full((1, 2, 2), 0.5))


def test_arrays_never_load_pickles() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        codec.decode_npy(buf.getvalue())
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(ValueError, match="one array"):
        codec.decode_npz(buf.getvalue())


# -- json --------------------------------------------------------------------------------------


def test_json_converts_numpy_and_nan() -> None:
    meta = {
        "fps": np.float32(12.5),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "frames": np.arange(3),
        "stats": {"bg_flow_mean": float("nan"), "occ": np.float64(np.inf), "x": [1.5, None]},
        "t": (1, 2),
    }
    back = codec.decode_json(codec.encode_json(meta))
    assert back == {
        "fps": 12.5,
        "n": 3,
        "ok": True,
        "frames": [0, 1, 2],
        "stats": {"bg_flow_mean": None, "occ": None, "x": [1.5, None]},
        "t": [1, 2],
    }
    assert json.loads(codec.encode_json(meta))["n"] == 3


def test_json_refuses_what_it_cannot_store() -> None:
    with pytest.raises(TypeError, match=r"meta\.p: PosixPath"):
        codec.encode_json({"p": Path("/x")})
    with pytest.raises(TypeError, match="keys must be str"):
        codec.encode_json({"a": {1: 2}})
    with pytest.raises(ValueError, match="NaN"):
        codec.decode_json(b'{"a": NaN}')
    with pytest.raises(ValueError, match="object"):
        codec.decode_json(b"[1, 2]")


# -- samples -----------------------------------------------------------------------------------


def test_encode_sample_fields() -> None:
    fields = codec.encode_sample(make_sample(KEY), preset="ultrafast")
    assert fields["__key__"] == KEY
    assert set(fields) - {"__key__"} == set(FIELDS)
    assert all(isinstance(fields[f], bytes) for f in FIELDS)
    no_depth = codec.encode_sample(make_sample(KEY, depth=False), preset="ultrafast")
    assert set(no_depth) - {"__key__"} == set(REQUIRED_FIELDS)


def test_encode_sample_refuses_inconsistent_samples_and_bad_keys() -> None:
    s = make_sample(KEY)
    s.ranks = s.ranks[:-1]
    with pytest.raises(ValueError, match="ranks has 7 frames"):
        codec.encode_sample(s)
    s = make_sample(KEY)
    s.mask = s.mask[:, :-1]
    with pytest.raises(ValueError, match="map sizes differ"):
        codec.encode_sample(s)
    with pytest.raises(ValueError, match="invalid sample key"):
        codec.encode_sample(make_sample("a.b_0000000"))


def test_sample_round_trip() -> None:
    s = make_sample(KEY)
    back = codec.decode_sample(codec.encode_sample(s))
    assert back.key == s.key and back.fps == s.fps and back.meta == s.meta
    assert back.frames.shape == s.frames.shape and psnr(back.frames, s.frames) > 35
    np.testing.assert_array_equal(back.pose, s.pose)
    np.testing.assert_allclose(back.flow, s.flow, rtol=2.0**-11, atol=2.0**-25)
    assert back.depth is not None and s.depth is not None
    np.testing.assert_allclose(back.depth, s.depth, rtol=2.0**-11, atol=2.0**-25)
    for name in ("mask", "order", "ranks"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))
    assert codec.sample_shape_errors(back) == []


def test_decode_only_requested_fields() -> None:
    raw = codec.encode_sample(make_sample(KEY), preset="ultrafast")
    s = codec.decode_sample(raw, fields=["pose.npy", "mask.npz"])
    assert s.pose.shape == (8, 2, 133, 3) and s.mask.shape == (8, 12, 16)
    assert s.frames.shape == (0, 0, 0, 3) and s.frames.dtype == np.uint8
    assert s.flow.shape == (0, 0, 0, 2) and s.ranks.shape == (0, 0) and s.depth is None
    assert s.fps == 25.0  # from the metadata
    with pytest.raises(ValueError, match="unknown fields"):
        codec.decode_sample(raw, fields=["pose"])
    del raw["pose.npy"]
    with pytest.raises(KeyError, match=r"pose\.npy"):
        codec.decode_sample(raw)
