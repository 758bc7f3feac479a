"""Reading an output: shard list, Parquet tables with --where, decoded samples (reader.py)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from shards.reader import (
    WhereError,
    filter_table,
    iter_samples,
    read_clips,
    read_videos,
    shard_paths,
)
from shards.schema import CLIP_SCHEMA, VIDEO_SCHEMA
from tests.shards.synthetic import make_sample


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_tables_have_the_contract_schema(output: Path) -> None:
    clips, videos = read_clips(output), read_videos(output)
    assert clips.schema.equals(CLIP_SCHEMA) and videos.schema.equals(VIDEO_SCHEMA)
    assert clips.num_rows == 11 and videos.num_rows == 5


def test_where_filters_like_pandas(output: Path) -> None:
    where = "bg_flow_mean < 3 and characters_max >= 2"
    got = read_clips(output, where=where)
    df = read_clips(output).to_pandas()
    expected = df[(df.bg_flow_mean < 3) & (df.characters_max >= 2)]
    assert got.column("key").to_pylist() == expected.key.tolist()
    assert 0 < got.num_rows < len(df)
    assert got.schema.equals(CLIP_SCHEMA)
    assert read_videos(output, where="status = 'failed'").num_rows == 1
    assert read_clips(output, where=where, columns=["key"]).column_names == ["key"]


def test_where_drops_null_rows(output: Path) -> None:
    table = read_clips(output)
    n_null = table["occlusion_rate_mean"].null_count
    assert n_null > 0  # single-character clips
    kept = filter_table(table, "occlusion_rate_mean >= 0")
    assert kept.num_rows == table.num_rows - n_null
    assert filter_table(table, "not (occlusion_rate_mean >= 0)").num_rows == 0


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("bogus < 1", r"bogus.*\n.*columns of the clips table: key, shard"),
        ("bg_flow_mean <", "Parser Error"),
        ("1 = 1; drop table clips", "cannot filter"),
        ("key in (select * from read_csv('/etc/passwd'))", "disabled"),
    ],
)
def test_bad_where_is_a_clear_error(output: Path, where: str, match: str) -> None:
    with pytest.raises(WhereError, match=match):
        read_clips(output, where=where)


def test_missing_and_empty_outputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such output"):
        read_clips(tmp_path / "nope")
    assert read_videos(tmp_path).num_rows == 0 and shard_paths(tmp_path) == []
    with pytest.raises(ValueError, match="not a file system URI"):
        read_clips("nosuch://bucket/out")


def test_shard_paths_skip_orphans_and_tmp_files(copy: Path) -> None:
    before = shard_paths(copy)
    shutil.copy(before[0], copy / "shards" / "shard-000099.tar")  # no clips Parquet: orphan
    (copy / "shards" / ".shard-000100.tar.tmp").write_bytes(b"partial")
    (copy / "stats" / "clips" / ".shard-000100.parquet.tmp").write_bytes(b"partial")
    assert shard_paths(copy) == before
    assert read_clips(copy).num_rows == 11
    assert len(list(iter_samples(copy, fields=["ranks.npy"]))) == 11


@pytest.mark.filterwarnings("error")
def test_iter_samples_follow_the_clips_table(output: Path) -> None:
    samples = list(iter_samples(output))
    assert [s.key for s in samples] == read_clips(output).column("key").to_pylist()
    first = samples[0]
    expected = make_sample(first.key, p=first.pose.shape[1], seed=0)
    np.testing.assert_array_equal(first.pose, expected.pose)
    np.testing.assert_array_equal(first.mask, expected.mask)
    assert first.frames.shape == (8, 48, 64, 3) and first.fps == 25.0
    assert first.meta["key"] == first.key


@pytest.mark.filterwarnings("error")
def test_iter_samples_with_fields_and_keys_reads_only_what_is_asked(copy: Path) -> None:
    keys = read_clips(copy, where="clip_index = 0").column("key").to_pylist()
    shards = {r["shard"] for r in read_clips(copy, where="clip_index = 0").to_pylist()}
    for path in shard_paths(copy):  # garble the shards that hold none of the keys
        if Path(path).name not in shards:
            Path(path).write_bytes(b"garbage" * 100)
    samples = list(iter_samples(copy, fields=["pose.npy"], keys=keys))
    assert sorted(s.key for s in samples) == sorted(keys)
    assert all(s.frames.shape == (0, 0, 0, 3) and s.pose.shape[0] == 8 for s in samples)
    with pytest.raises(tarfile.ReadError):  # without keys the garbled shards are read
        list(iter_samples(copy, fields=["pose.npy"]))


def test_iter_samples_from_a_list_of_shards(output: Path) -> None:
    paths = shard_paths(output)[1:]
    keys = [s.key for s in iter_samples(paths, fields=["json"])]
    assert keys == read_clips(output, where="shard != 'shard-000000.tar'")["key"].to_pylist()
    with pytest.raises(ValueError, match="unknown fields"):
        next(iter_samples(output, fields=["frames"]))


def test_reading_writes_nothing(
    output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(output)
    read_clips(output, where="bg_flow_mean > 0")
    read_videos(output, where="status = 'ok'")
    list(iter_samples(output))
    list(iter_samples(output, keys=read_clips(output)["key"].to_pylist()[:2]))
    assert snapshot(output) == before
    assert list(cwd.iterdir()) == []
