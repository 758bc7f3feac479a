"""The x264 settings asked for are the ones the stored ``mp4`` was encoded with.

libx264 writes its full option string into the stream (an SEI message: ``x264 - core N -
... options: cabac=1 ref=1 ... crf=23.0 ...``); these tests read it back from the packets
PyAV demuxes and check it against x264's own preset table (``x264 --fullhelp``: ultrafast
turns CABAC and B-frames off, superfast searches with ``me=dia subme=1``, veryfast ``me=hex
subme=2``, medium ``subme=7 ref=3``). Next to it: benchmarks/encoder.py, docs/cluster.md.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import av
import numpy as np
import pytest

from preprocess.config import PreprocessConfig
from shards.codec import encode_sample
from shards.video import decode_h264, encode_h264
from tests.shards.synthetic import make_sample

PRESET_OPTIONS = {  # a few options each preset sets, from x264's documented preset table
    "ultrafast": {"cabac": "0", "bframes": "0", "me": "dia", "subme": "0"},
    "superfast": {"cabac": "1", "me": "dia", "subme": "1", "ref": "1"},
    "veryfast": {"me": "hex", "subme": "2", "ref": "1"},
    "medium": {"me": "hex", "subme": "7", "ref": "3"},
}


def x264_options(mp4: bytes) -> dict[str, str]:
    """The ``options:`` of the x264 SEI message found in the demuxed packets of an MP4."""
    with av.open(io.BytesIO(mp4), "r") as container:
        data = b"".join(bytes(p) for p in container.demux(container.streams.video[0]))
    found = re.search(rb"x264 - core \d+.*? options: ([ -~]+)", data)
    assert found, "no x264 SEI in the stream"
    pairs = (item.split("=", 1) for item in found.group(1).decode().split(" ") if "=" in item)
    return dict(pairs)


def frames(t: int = 6) -> np.ndarray:
    """A moving gradient with noise, (T, 64, 96, 3) uint8: real work for the encoder."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96]
    out = [np.stack([x + 4 * i, y + 2 * i, x + y], axis=-1) % 256 for i in range(t)]
    noisy = np.stack(out).astype(np.int16) + rng.integers(-8, 9, (t, 64, 96, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)  # (T, 64, 96, 3)


@pytest.mark.parametrize(
    ("preset", "crf"), [("ultrafast", 30), ("superfast", 23), ("veryfast", 20), ("medium", 18)]
)
def test_preset_and_crf_reach_the_stream(preset: str, crf: int) -> None:
    data = encode_h264(frames(), 24.0, crf=crf, preset=preset, threads=1)
    options = x264_options(data)
    assert float(options["crf"]) == crf
    assert options["threads"] == "1"
    for key, value in PRESET_OPTIONS[preset].items():
        assert options[key] == value, (preset, key, options[key])
    decoded, _ = decode_h264(data)
    assert decoded.shape == (6, 64, 96, 3)


def test_encode_sample_passes_the_shard_settings() -> None:
    sample = make_sample("abcdef0123456789_0000000")
    fields = encode_sample(sample, crf=26, preset="ultrafast")
    mp4 = fields["mp4"]
    assert isinstance(mp4, bytes)
    options = x264_options(mp4)
    assert float(options["crf"]) == 26 and options["cabac"] == "0"


def test_the_default_encoder_is_the_documented_one() -> None:
    """The config's default x264 setting is the one docs/design.md §4 names (chosen in
    docs/cluster.md), and a clip encoded with it carries exactly that setting."""
    shards = PreprocessConfig().shards
    design = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    named = re.search(
        r"CRF `shards.crf` \(default (\d+)\), preset `shards.x264_preset` "
        r"\(default `(\w+)`\)",
        design,
    )
    assert named, "docs/design.md §4 no longer names the default x264 setting"
    assert (shards.crf, shards.x264_preset) == (int(named.group(1)), named.group(2))
    data = encode_h264(frames(), 30.0, crf=shards.crf, preset=shards.x264_preset)
    options = x264_options(data)
    assert float(options["crf"]) == shards.crf
    for key, value in PRESET_OPTIONS[shards.x264_preset].items():
        assert options[key] == value
