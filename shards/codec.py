"""Symmetric ``encode_x`` / ``decode_x`` per sample field, and whole samples (docs/design.md §4).

Every encoding is pinned by a round-trip test in ``tests/shards/test_codec.py``:

=============  ===================================================================  ==========
field          bytes                                                                round trip
=============  ===================================================================  ==========
``mp4``        H.264 (libx264, yuv420p, ``crf``/``preset``) in MP4; fps stored in   lossy
               the stream as the nearest fraction with denominator <= 1001
``pose.npy``   ``np.save`` of float32 ``(T, P, 133, 3)``                            exact
``flow.npz``   ``np.savez_compressed`` of one float16 ``(T, h, w, 2)`` array        float16
``depth.npz``  ``np.savez_compressed`` of one float16 ``(T, h, w)`` array in [0, 1] float16
``mask.npz``   ``np.savez_compressed`` of one uint8 0/1 ``(T, h, w)`` array         exact
``order.npz``  ``np.savez_compressed`` of one uint8 ``(T, h, w)`` array             exact
``ranks.npy``  ``np.save`` of int8 ``(T, P)``, -1 where the track is absent         exact
``json``       UTF-8 JSON object; numpy scalars/arrays become numbers/lists and     NaN→null
               NaN/inf become null; ``encode_sample`` adds ``format_version``
               (``schema.FORMAT_VERSION``), ``decode_sample`` checks and removes it
=============  ===================================================================  ==========

float16 rounds to nearest: for ``|x| >= 2**-14`` the error is at most ``|x| * 2**-11``
(0.05%), below that at most ``2**-25``; values beyond ±65504 are refused. Flow may first be
rounded to a grid (``flow_step``; 1/16 px in the preprocessing config, ``None`` = off) to
compress better. Arrays are always read with ``allow_pickle=False``; an ``.npz`` field holds
exactly one array, ``arr_0``.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from shards.schema import (
    FIELDS,
    NUM_KEYPOINTS,
    REQUIRED_FIELDS,
    Sample,
    check_format_version,
    check_key,
    with_format_version,
)
from shards.video import FPS_MAX_DENOMINATOR as FPS_MAX_DENOMINATOR  # re-exported
from shards.video import decode_h264, encode_h264
from shards.video import fps_fraction as fps_fraction  # re-exported

FLOAT16_MAX = 65504.0
FLOAT16_REL_ERROR = 2.0**-11
"""Largest relative error of the float16 round trip for normal numbers (>= 2**-14)."""
FLOAT16_ABS_ERROR_SUBNORMAL = 2.0**-25
"""Largest absolute error of the float16 round trip below 2**-14."""


# -- mp4 (shards/video.py) ---------------------------------------------------------------------

encode_frames = encode_h264
"""``(T, H, W, 3)`` uint8 RGB frames -> H.264 MP4 bytes (``video.encode_h264``)."""
decode_frames = decode_h264
"""MP4 bytes -> (frames, fps) (``video.decode_h264``)."""


# -- arrays ------------------------------------------------------------------------------------


def encode_npy(array: np.ndarray) -> bytes:
    """One array in ``.npy`` format (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    array = np.load(io.BytesIO(data), allow_pickle=False)
    _check(isinstance(array, np.ndarray), "expected a .npy array, got an .npz archive")
    return array


DEFLATE_LEVEL = 1
"""zlib level of the ``.npz`` fields. ``np.savez_compressed`` takes none and deflates at 6:
on 64 dance frames the flow (1/16 px grid, map 160x284) costs 4.8 CPU ms and 25.0 KB per
frame at 6, 2.0 ms and 31.1 KB at 3, 1.2 ms and 34.8 KB at 1. Any level reads back the same
(``np.load``); docs/cluster.md "Encoder settings"."""


def encode_npz(array: np.ndarray) -> bytes:
    """One array, deflated at :data:`DEFLATE_LEVEL`, in ``.npz`` format under the name
    ``arr_0`` (the archive ``np.savez_compressed`` writes, at another level)."""
    buf = io.BytesIO()
    archive = zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=DEFLATE_LEVEL)
    with archive, archive.open("arr_0.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npz(data: bytes) -> np.ndarray:
    archive = np.load(io.BytesIO(data), allow_pickle=False)
    _check(isinstance(archive, np.lib.npyio.NpzFile), "expected an .npz archive, got .npy")
    with archive:
        _check(archive.files == ["arr_0"], f"expected one array arr_0, got {archive.files}")
        return archive["arr_0"]


def encode_pose(pose: np.ndarray) -> bytes:
    """Keypoints ``(T, P, 133, 3)`` -> float32 ``.npy``."""
    _check_shape("pose", pose, 4, (NUM_KEYPOINTS, 3))
    _check(bool(np.isfinite(pose).all()), "pose contains NaN or inf")
    return encode_npy(pose.astype(np.float32, copy=False))


def decode_pose(data: bytes) -> np.ndarray:
    return _expect(decode_npy(data), "pose", np.float32, 4, (NUM_KEYPOINTS, 3))


def encode_flow(flow: np.ndarray, step: float | None = None) -> bytes:
    """Backward flow ``(T, h, w, 2)`` in stored pixels -> float16 ``.npz``.

    ``step`` (px, e.g. 1/32) first rounds the flow to multiples of ``step``: the format stays
    float16 but deflate compresses it several times better (estimator noise in the low
    mantissa bits is what does not compress); the error grows to ``step / 2 + |x| * 2**-11``.
    """
    _check_shape("flow", flow, 4, (2,))
    if step is not None:
        _check(step > 0, f"flow step must be > 0, got {step}")
        flow = np.round(flow / step) * step
    return encode_npz(_to_float16("flow", flow))


def decode_flow(data: bytes) -> np.ndarray:
    """-> float32 ``(T, h, w, 2)``."""
    return _expect(decode_npz(data), "flow", np.float16, 4, (2,)).astype(np.float32)


def encode_depth(depth: np.ndarray) -> bytes:
    """Relative inverse depth ``(T, h, w)`` normalised per frame to [0, 1] -> float16 ``.npz``."""
    _check_shape("depth", depth, 3)
    half = _to_float16("depth", depth)
    _check(
        bool((half >= 0).all() and (half <= 1).all()),
        f"depth must be normalised to [0, 1], got [{depth.min():g}, {depth.max():g}]",
    )
    return encode_npz(half)


def decode_depth(data: bytes) -> np.ndarray:
    """-> float32 ``(T, h, w)``."""
    return _expect(decode_npz(data), "depth", np.float16, 3).astype(np.float32)


def encode_mask(mask: np.ndarray) -> bytes:
    """Union dilation mask ``(T, h, w)`` (bool or 0/1) -> uint8 0/1 ``.npz``."""
    _check_shape("mask", mask, 3)
    if mask.dtype != np.bool_:
        _check(bool(np.isin(mask, (0, 1)).all()), "mask values must be 0/1 or bool")
    return encode_npz(mask.astype(np.uint8))


def decode_mask(data: bytes) -> np.ndarray:
    """-> bool ``(T, h, w)``."""
    mask = _expect(decode_npz(data), "mask", np.uint8, 3)
    _check(bool((mask <= 1).all()), "mask values must be 0/1")
    return mask.astype(bool)


def encode_order(order: np.ndarray) -> bytes:
    """Depth-order map ``(T, h, w)`` with values 0..255 -> uint8 ``.npz``."""
    _check_shape("order", order, 3)
    return encode_npz(_to_int("order", order, np.uint8))


def decode_order(data: bytes) -> np.ndarray:
    return _expect(decode_npz(data), "order", np.uint8, 3)


def encode_ranks(ranks: np.ndarray) -> bytes:
    """Per-frame rank of each track ``(T, P)``, -1 where absent -> int8 ``.npy``."""
    _check_shape("ranks", ranks, 2)
    _check(bool((ranks >= -1).all()), "ranks must be >= -1 (-1 = absent)")
    return encode_npy(_to_int("ranks", ranks, np.int8))


def decode_ranks(data: bytes) -> np.ndarray:
    return _expect(decode_npy(data), "ranks", np.int8, 2)


# -- json --------------------------------------------------------------------------------------


def encode_json(meta: Mapping[str, Any]) -> bytes:
    """Metadata -> UTF-8 JSON. numpy scalars/arrays are converted, NaN and inf become null."""
    _check(isinstance(meta, Mapping), f"meta must be a mapping, got {type(meta).__name__}")
    return json.dumps(to_jsonable(meta), ensure_ascii=False, allow_nan=False).encode("utf-8")


def decode_json(data: bytes) -> dict[str, Any]:
    meta = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    _check(isinstance(meta, dict), f"json field must hold an object, got {type(meta).__name__}")
    return meta


def to_jsonable(obj: Any, where: str = "meta") -> Any:
    """A copy of ``obj`` made of JSON types only; raises TypeError naming what cannot be."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), where)
    if isinstance(obj, Mapping):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: JSON object keys must be str, got {bad[:3]!r}")
        return {k: to_jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serialisable; convert it first")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"json field holds {name}, which is not JSON (NaN is stored as null)")


# -- samples -----------------------------------------------------------------------------------


def sample_shape_errors(sample: Sample) -> list[str]:
    """What disagrees between a sample's arrays: frame count T, track count P, map size."""
    t = sample.frames.shape[0]
    maps = {"flow": sample.flow.shape[1:3], "mask": sample.mask.shape[1:3]}
    maps["order"] = sample.order.shape[1:3]
    counts = {"pose": sample.pose.shape[0], "flow": sample.flow.shape[0]}
    counts |= {"mask": sample.mask.shape[0], "order": sample.order.shape[0]}
    counts["ranks"] = sample.ranks.shape[0]
    if sample.depth is not None:
        maps["depth"] = sample.depth.shape[1:3]
        counts["depth"] = sample.depth.shape[0]
    errors = [f"{name} has {n} frames, frames has {t}" for name, n in counts.items() if n != t]
    if len(set(maps.values())) > 1:
        errors.append(f"map sizes differ: {maps}")
    if sample.pose.shape[1] != sample.ranks.shape[1]:
        errors.append(f"pose has {sample.pose.shape[1]} tracks, ranks {sample.ranks.shape[1]}")
    return errors


def encode_sample(
    sample: Sample,
    crf: int = 18,
    preset: str = "medium",
    flow_step: float | None = None,
    mp4: bytes | None = None,
) -> dict[str, bytes | str]:
    """A sample as WebDataset fields: ``__key__`` (str) and the ``FIELDS`` (bytes); ``depth.npz``
    only when ``sample.depth`` is not None. ``crf``/``preset`` go to x264, ``flow_step`` to
    :func:`encode_flow`. ``mp4``: the frames already encoded (:func:`encode_frames`; the
    preprocessing job encodes them right after decoding), used as they are; ``sample.frames``
    then only counts the frames (it may be ``(T, 0, 0, 3)``). The ``json`` field is
    ``sample.meta`` plus ``format_version``. Raises ValueError on inconsistent shapes."""
    check_key(sample.key)
    errors = sample_shape_errors(sample)
    if errors:
        raise ValueError(f"sample {sample.key}: " + "; ".join(errors))
    out: dict[str, bytes | str] = {
        "__key__": sample.key,
        "mp4": encode_frames(sample.frames, sample.fps, crf, preset) if mp4 is None else mp4,
        "pose.npy": encode_pose(sample.pose),
        "flow.npz": encode_flow(sample.flow, flow_step),
        "mask.npz": encode_mask(sample.mask),
        "order.npz": encode_order(sample.order),
        "ranks.npy": encode_ranks(sample.ranks),
        "json": encode_json(with_format_version(sample.meta)),
    }
    if sample.depth is not None:
        out["depth.npz"] = encode_depth(sample.depth)
    return out


_EMPTY: dict[str, tuple[tuple[int, ...], type]] = {
    "mp4": ((0, 0, 0, 3), np.uint8),
    "pose.npy": ((0, 0, NUM_KEYPOINTS, 3), np.float32),
    "flow.npz": ((0, 0, 0, 2), np.float32),
    "mask.npz": ((0, 0, 0), np.bool_),
    "order.npz": ((0, 0, 0), np.uint8),
    "ranks.npy": ((0, 0), np.int8),
}
_DECODERS = {
    "pose.npy": decode_pose,
    "flow.npz": decode_flow,
    "mask.npz": decode_mask,
    "order.npz": decode_order,
    "ranks.npy": decode_ranks,
}


def decode_sample(raw: Mapping[str, Any], fields: Collection[str] | None = None) -> Sample:
    """A WebDataset sample (``__key__`` plus field bytes) -> :class:`Sample`.

    ``fields`` (names from ``FIELDS``) limits decoding to those fields, for speed: the others
    are left as empty arrays of the right dtype and rank (e.g. ``frames.shape == (0, 0, 0, 3)``)
    and ``depth`` as None. ``json`` is always decoded; without ``mp4``, ``fps`` comes from the
    metadata. A requested required field that is missing raises KeyError; a sample of
    another format version raises ``schema.FormatVersionError`` (see ``encode_sample``).
    """
    wanted = set(FIELDS if fields is None else fields)
    unknown = wanted - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; fields are {list(FIELDS)}")
    key = str(raw["__key__"])
    missing = [f for f in REQUIRED_FIELDS if f in wanted and f not in raw]
    if missing or "json" not in raw:
        raise KeyError(f"sample {key} lacks fields {missing or ['json']}")
    arrays: dict[str, np.ndarray] = {f: np.zeros(s, d) for f, (s, d) in _EMPTY.items()}
    meta = check_format_version(decode_json(_bytes(raw["json"])), f"sample {key}")
    fps = float(meta.get("fps") or 0.0)
    if "mp4" in wanted:
        arrays["mp4"], fps = decode_frames(_bytes(raw["mp4"]))
    for name, decode in _DECODERS.items():
        if name in wanted:
            arrays[name] = decode(_bytes(raw[name]))
    depth = None
    if "depth.npz" in wanted and "depth.npz" in raw:
        depth = decode_depth(_bytes(raw["depth.npz"]))
    return Sample(
        key=key,
        frames=arrays["mp4"],
        fps=fps,
        pose=arrays["pose.npy"],
        flow=arrays["flow.npz"],
        mask=arrays["mask.npz"],
        order=arrays["order.npz"],
        ranks=arrays["ranks.npy"],
        meta=meta,
        depth=depth,
    )


# -- helpers -----------------------------------------------------------------------------------


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_shape(name: str, array: np.ndarray, ndim: int, tail: tuple[int, ...] = ()) -> None:
    ok = array.ndim == ndim and tuple(array.shape[ndim - len(tail) :]) == tail
    want = ", ".join(["..."] * (ndim - len(tail)) + [str(n) for n in tail])
    _check(ok, f"{name} must have shape ({want}), got {array.shape}")


def _expect(
    array: np.ndarray, name: str, dtype: type, ndim: int, tail: tuple[int, ...] = ()
) -> np.ndarray:
    _check(array.dtype == dtype, f"{name} is stored as {array.dtype}, expected {np.dtype(dtype)}")
    _check_shape(name, array, ndim, tail)
    return array


def _to_float16(name: str, array: np.ndarray) -> np.ndarray:
    _check(bool(np.isfinite(array).all()), f"{name} contains NaN or inf")
    peak = float(np.abs(array).max(initial=0.0))
    _check(peak <= FLOAT16_MAX, f"{name} has |value| {peak:g} > {FLOAT16_MAX:g} (float16 range)")
    return array.astype(np.float16)


def _to_int(name: str, array: np.ndarray, dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    ok = array.dtype.kind in "biu" and (
        array.size == 0 or (array.min() >= info.min and array.max() <= info.max)
    )
    _check(ok, f"{name} must hold integers in [{info.min}, {info.max}], got {array.dtype}")
    return array.astype(dtype)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected bytes from the tar, got {type(value).__name__}")
