"""The shard writer: rollover, per-video transactions, atomic shards, appending (writer.py)."""

from __future__ import annotations

import math
import os
import tarfile
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from shards.reader import read_clips, read_videos, shard_paths
from shards.schema import FIELDS, REQUIRED_FIELDS
from shards.writer import ShardWriter, tar_file_size
from tests.shards.synthetic import (
    encoded_clip,
    failed_row,
    ok_video_row,
    video_id,
    write_output,
    write_video,
)


def tar_keys(path: Path | str) -> list[str]:
    with tarfile.open(path) as tar:
        names = [m.name for m in tar.getmembers()]
    return sorted({n.split(".", 1)[0] for n in names})


def visible_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_shards_roll_over_at_max_clips(tmp_path: Path) -> None:
    rows = write_output(tmp_path, [3, 5, 1, 2], max_clips=4)
    shards = shard_paths(tmp_path)
    assert [Path(s).name for s in shards] == [f"shard-00000{i}.tar" for i in range(3)]
    assert [len(tar_keys(s)) for s in shards] == [4, 4, 3]
    for shard in shards:
        table = pq.read_table(tmp_path / "stats" / "clips" / f"{Path(shard).stem}.parquet")
        assert sorted(table.column("key").to_pylist()) == tar_keys(shard)
        assert set(table.column("shard").to_pylist()) == {Path(shard).name}
    assert {r.key: r.shard for r in rows} == dict(
        zip(*(read_clips(tmp_path).column(c).to_pylist() for c in ("key", "shard")), strict=True)
    )
    # video 2 spans shards 0 and 1: its row is written with shard 1, once all its clips are in.
    spans = {r.shard for r in rows if r.video_id == video_id(2)}
    assert spans == {"shard-000000.tar", "shard-000001.tar"}
    videos_of = {
        p.name: pq.read_table(p).column("video_id").to_pylist()
        for p in (tmp_path / "stats" / "videos").glob("*.parquet")
    }
    assert videos_of["shard-000000.parquet"] == [video_id(1)]
    assert videos_of["shard-000001.parquet"] == [video_id(2)]
    assert sorted(videos_of["shard-000002.parquet"]) == [video_id(3), video_id(4), video_id(999)]


def test_shards_roll_over_at_max_bytes(tmp_path: Path) -> None:
    fields, _ = encoded_clip(video_id(1), 0)
    one = sum(len(v) for k, v in fields.items() if k != "__key__")
    max_bytes = tar_file_size(int(2.5 * (one + 9 * 512)))  # room for about two clips
    with ShardWriter(tmp_path, max_clips=100, max_bytes=max_bytes) as writer:
        write_video(writer, video_id(1), 7)
    sizes = [Path(p).stat().st_size for p in shard_paths(tmp_path)]
    counts = [len(tar_keys(p)) for p in shard_paths(tmp_path)]
    assert sum(counts) == 7 and len(counts) >= 3
    assert all(s <= max_bytes for s in sizes), (sizes, max_bytes)
    assert all(s % 10240 == 0 for s in sizes)
    # maximal: one more clip would not have fitted
    assert all(s + one > max_bytes for s in sizes[:-1])


def test_a_clip_larger_than_max_bytes_gets_its_own_shard(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_clips=100, max_bytes=1000) as writer:
        write_video(writer, video_id(1), 3)
    assert [len(tar_keys(p)) for p in shard_paths(tmp_path)] == [1, 1, 1]


def test_discarded_video_leaves_no_trace(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_clips=2) as writer:
        write_video(writer, video_id(1), 3)
        staging = writer.begin_video(video_id(2))
        for i in range(3):
            staging.add(*encoded_clip(video_id(2), i))
        assert staging.path.stat().st_size > 3 * 20_000  # spilled to disk, not held in memory
        staging.discard()
        assert not staging.path.exists()
        write_video(writer, video_id(3), 1)
    assert set(read_clips(tmp_path).column("video_id").to_pylist()) == {video_id(1), video_id(3)}
    assert video_id(2) not in read_videos(tmp_path).column("video_id").to_pylist()
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or video_id(2).encode() not in path.read_bytes(), path
    assert not (tmp_path / ".staging").exists()


def crash_inside_a_transaction(root: Path) -> None:
    with ShardWriter(root) as writer:
        write_video(writer, video_id(1), 2)
        with writer.begin_video(video_id(2)) as staging:
            staging.add(*encoded_clip(video_id(2), 0))
            raise RuntimeError("extractor crashed")


def test_exception_inside_a_transaction_leaves_nothing_partial(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="extractor crashed"):
        crash_inside_a_transaction(tmp_path)
    assert visible_files(tmp_path) == [
        "shards/shard-000000.tar",
        "stats/clips/shard-000000.parquet",
        "stats/videos/shard-000000.parquet",
    ]
    assert tar_keys(tmp_path / "shards" / "shard-000000.tar") == sorted(
        read_clips(tmp_path).column("key").to_pylist()
    )
    assert read_videos(tmp_path).column("video_id").to_pylist() == [video_id(1)]


def test_open_shard_is_invisible_until_closed(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        write_video(writer, video_id(1), 2)
        hidden = [p.name for p in (tmp_path / "shards").iterdir()]
        assert hidden == [".shard-000000.tar.tmp"]
        assert shard_paths(tmp_path) == [] and read_clips(tmp_path).num_rows == 0
        assert ds.dataset(tmp_path / "stats" / "clips", format="parquet").count_rows() == 0
    assert len(shard_paths(tmp_path)) == 1


def test_failure_while_committing_drops_the_open_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ShardWriter(tmp_path, max_clips=2)
    write_video(writer, video_id(1), 3)  # shard 0 closed, shard 1 open with one clip
    calls = {"n": 0}
    original = ShardWriter._write_sample

    def failing(self: ShardWriter, *args: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ShardWriter, "_write_sample", failing)
    with pytest.raises(OSError, match="disk full"):
        write_video(writer, video_id(2), 2)
    with pytest.raises(RuntimeError, match="failed earlier"):
        writer.begin_video(video_id(3))
    writer.close()
    assert [Path(p).name for p in shard_paths(tmp_path)] == ["shard-000000.tar"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert read_clips(tmp_path).num_rows == 2  # the complete shard only
    assert read_videos(tmp_path).num_rows == 0  # video 1 is not whole in closed shards


def test_parquet_is_one_dataset_for_pyarrow_pandas_and_duckdb(tmp_path: Path) -> None:
    write_output(tmp_path, [3, 5, 1, 2], max_clips=4)
    clips = ds.dataset(tmp_path / "stats" / "clips", format="parquet").to_table()
    videos = ds.dataset(tmp_path / "stats" / "videos", format="parquet").to_table()
    assert clips.num_rows == 11 and videos.num_rows == 5
    assert len(pd.read_parquet(tmp_path / "stats" / "clips")) == 11
    with duckdb.connect() as con:
        glob = f"{tmp_path}/stats/clips/*.parquet"
        counts = con.execute(f"select count(*), sum(n_frames) from '{glob}'").fetchall()
        videos = f"{tmp_path}/stats/videos/*.parquet"
        status = con.execute(
            f"select status, count(*) from '{videos}' group by 1 order by 1"
        ).fetchall()
    assert counts == [(11, 88)]
    assert status == [("failed", 1), ("ok", 4)]


def test_reopening_appends_without_collisions(tmp_path: Path) -> None:
    write_output(tmp_path, [3, 2], max_clips=4)
    first = [Path(p).name for p in shard_paths(tmp_path)]
    with ShardWriter(tmp_path, max_clips=4) as writer:
        write_video(writer, video_id(50), 5)
    names = [Path(p).name for p in shard_paths(tmp_path)]
    assert names[: len(first)] == first
    assert names[len(first) :] == ["shard-000002.tar", "shard-000003.tar"]
    keys = read_clips(tmp_path).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 10
    assert sum(len(tar_keys(p)) for p in shard_paths(tmp_path)) == 10
    assert read_videos(tmp_path).num_rows == 4


def test_recommitting_a_video_skips_clips_already_in_the_output(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_clips=2) as writer:
        write_video(writer, video_id(1), 3)
    with ShardWriter(tmp_path, max_clips=2) as writer:
        rows = write_video(writer, video_id(1), 4)  # the same 3 clips and one more
    assert [r.shard for r in rows][:3] == ["shard-000000.tar"] * 2 + ["shard-000001.tar"]
    keys = read_clips(tmp_path).column("key").to_pylist()
    assert sorted(keys) == sorted(r.key for r in rows)


@pytest.mark.parametrize("prefixes", [("shard-a", "shard-b"), ("shard", "shard")])
def test_concurrent_writers_do_not_collide(tmp_path: Path, prefixes: tuple[str, str]) -> None:
    a = ShardWriter(tmp_path, max_clips=2, prefix=prefixes[0])
    b = ShardWriter(tmp_path, max_clips=2, prefix=prefixes[1])
    for n in range(3):
        write_video(a, video_id(10 + n), 2)
        write_video(b, video_id(20 + n), 3)
    a.close()
    b.close()
    names = [Path(p).name for p in shard_paths(tmp_path)]
    assert len(names) == len(set(names)) == 3 + 5
    keys = read_clips(tmp_path).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 15
    assert sum(len(tar_keys(p)) for p in shard_paths(tmp_path)) == 15
    assert read_videos(tmp_path).num_rows == 6


def test_video_rows_without_shards_are_flushed_at_close(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        writer.add_video_row(failed_row(video_id(1)))
        staging = writer.begin_video(video_id(2))
        skipped = ok_video_row(video_id(2), [])
        skipped.status = "skipped"
        staging.commit(skipped)
    assert shard_paths(tmp_path) == []
    assert visible_files(tmp_path) == ["stats/videos/shard-000000.parquet"]
    assert sorted(read_videos(tmp_path).column("status").to_pylist()) == ["failed", "skipped"]


def test_staging_refuses_inconsistent_input(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        staging = writer.begin_video(video_id(1))
        fields, row = encoded_clip(video_id(1), 0)
        with pytest.raises(ValueError, match="does not match"):
            staging.add(fields, encoded_clip(video_id(1), 1)[1])
        with pytest.raises(ValueError, match="missing fields"):
            staging.add({k: v for k, v in fields.items() if k != "mask.npz"}, row)
        with pytest.raises(TypeError, match="not bytes"):
            staging.add({**fields, "json": {"a": 1}}, row)
        row.seconds_pose = None  # type: ignore[assignment]
        with pytest.raises(ValueError, match="seconds_pose must not be None"):
            staging.add(fields, row)
        row.seconds_pose, row.bg_flow_mean = 0.0, math.nan
        staging.add(fields, row)
        with pytest.raises(ValueError, match="staged twice"):
            staging.add(fields, row)
        with pytest.raises(ValueError, match="n_clips=2"):
            staging.commit(ok_video_row(video_id(1), [row, row]))
        with pytest.raises(ValueError, match="failed video"):
            staging.commit(failed_row(video_id(1)))
        staging.commit(ok_video_row(video_id(1), [row]))
        with pytest.raises(RuntimeError, match="already committed"):
            staging.add(fields, row)
        with pytest.raises(ValueError, match="n_clips=1"):
            writer.add_video_row(ok_video_row(video_id(2), [row]))
    assert read_clips(tmp_path).column("bg_flow_mean").to_pylist() == [None]  # NaN -> null


def test_leaving_a_staging_block_without_commit_discards_and_raises(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        staging = writer.begin_video(video_id(1))
        staging.add(*encoded_clip(video_id(1), 0))
        with pytest.raises(RuntimeError, match="neither committed nor discarded"), staging:
            pass
        assert staging.state == "discarded" and not staging.path.exists()
    assert read_clips(tmp_path).num_rows == 0


def test_samples_in_shards_have_every_field(tmp_path: Path) -> None:
    write_output(tmp_path, [2], max_clips=4)
    with tarfile.open(shard_paths(tmp_path)[0]) as tar:
        names = {m.name.split(".", 1)[1] for m in tar.getmembers()}
    assert set(REQUIRED_FIELDS) <= names <= set(FIELDS)


def test_crash_after_the_tar_rename_leaves_an_ignored_orphan(tmp_path: Path) -> None:
    """State between rename 3 and 4: the tar is visible, its clips Parquet file is not."""
    with ShardWriter(tmp_path, max_clips=2) as writer:
        write_video(writer, video_id(1), 2)
    clips = tmp_path / "stats" / "clips" / "shard-000000.parquet"
    clips.rename(clips.with_name(".shard-000000.parquet.tmp"))
    (tmp_path / "stats" / "videos" / "shard-000000.parquet").unlink()
    assert shard_paths(tmp_path) == [] and read_clips(tmp_path).num_rows == 0
    with ShardWriter(tmp_path, max_clips=2) as writer:  # the re-run redoes the video
        write_video(writer, video_id(1), 2)
    assert [Path(p).name for p in shard_paths(tmp_path)] == ["shard-000001.tar"]
    assert read_clips(tmp_path).num_rows == 2 and read_videos(tmp_path).num_rows == 1


def test_crash_before_the_video_rows_is_completed_by_a_rerun(tmp_path: Path) -> None:
    """State between rename 4 and 5, or a video spanning shards of which only the first
    closed: clips are in the output without their video row."""
    with ShardWriter(tmp_path, max_clips=2) as writer:
        write_video(writer, video_id(1), 3)
    (tmp_path / "stats" / "videos" / "shard-000001.parquet").unlink()
    assert read_videos(tmp_path).num_rows == 0
    with ShardWriter(tmp_path, max_clips=2) as writer:
        write_video(writer, video_id(1), 3)
    keys = read_clips(tmp_path).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 3
    assert read_videos(tmp_path).column("n_clips").to_pylist() == [3]
    assert sum(len(tar_keys(p)) for p in shard_paths(tmp_path)) == 3


def test_failure_while_closing_a_shard_takes_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename

    def rename(src: Path, dst: Path) -> None:
        if str(dst).endswith("shard-000001.parquet"):
            raise OSError("disk full")
        real_rename(src, dst)

    monkeypatch.setattr("shards.publish.os.rename", rename)
    writer = ShardWriter(tmp_path, max_clips=2)
    write_video(writer, video_id(1), 2)
    write_video(writer, video_id(2), 2)  # rolls over: shard 0 closes fine, shard 1 opens
    with pytest.raises(OSError, match="disk full"):
        writer.close()  # renaming shard 1's clips Parquet file fails
    assert visible_files(tmp_path) == [
        "shards/shard-000000.tar",
        "stats/clips/shard-000000.parquet",
        "stats/videos/shard-000000.parquet",
    ]
    assert read_videos(tmp_path).column("video_id").to_pylist() == [video_id(1)]
