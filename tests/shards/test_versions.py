"""Format versions (schema.py): every sample records the version; other versions are refused
with a message that says what was read, what this code reads and what to do."""

from __future__ import annotations

import json

import pytest

from shards import codec
from shards.schema import (
    FORMAT_VERSION,
    FormatVersionError,
    check_format_version,
    with_format_version,
)
from tests.shards.synthetic import clip_key, make_sample, video_id

KEY = clip_key(video_id(5), 0)


def test_a_written_sample_carries_the_version() -> None:
    sample = make_sample(KEY)
    fields = codec.encode_sample(sample, preset="ultrafast")
    meta = json.loads(fields["json"])
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert codec.decode_sample(fields).meta == sample.meta  # checked and removed on read
    assert "format_version" not in sample.meta


def with_version(version: object) -> dict[str, bytes | str]:
    fields = codec.encode_sample(make_sample(KEY), preset="ultrafast")
    meta = json.loads(fields["json"])
    if version is None:
        del meta["format_version"]
    else:
        meta["format_version"] = version
    fields["json"] = json.dumps(meta).encode()
    return fields


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (None, r"no format_version .* reads format version 1: re-run preprocessing"),
        (0, r"format version 0 is older .* reads format version 1: re-run preprocessing"),
        (2, r"format version 2 is newer .* reads format version 1: upgrade mcanim"),
        ("1", r"format_version '1' is not a number"),
    ],
)
def test_other_versions_are_refused(version: object, message: str) -> None:
    raw = with_version(version)
    with pytest.raises(FormatVersionError, match=f"sample {KEY}: {message}"):
        codec.decode_sample(raw)
    with pytest.raises(FormatVersionError, match=message):  # also when only poses are read
        codec.decode_sample(raw, fields=["pose.npy"])


def test_version_helpers() -> None:
    data = with_format_version({"a": 1, "format_version": 99})
    assert data == {"format_version": FORMAT_VERSION, "a": 1}
    assert check_format_version(data, "config.yaml of OUT") == {"a": 1}
    with pytest.raises(ValueError, match=r"config\.yaml of OUT: no format_version"):
        check_format_version({"a": 1}, "config.yaml of OUT")
