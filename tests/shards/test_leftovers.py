"""``remove_leftovers``: a dead writer's tmp files, staging files and orphan tars go; a live
writer's files (locked while open) stay, and the live writer commits as if nothing happened."""

from __future__ import annotations

from pathlib import Path

from shards.reader import read_clips, shard_paths
from shards.validate import validate
from shards.writer import ShardWriter, remove_leftovers
from tests.shards.synthetic import encoded_clip, ok_video_row, video_id, write_video


def test_only_dead_writers_files_are_removed(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_clips=2) as first:
        write_video(first, video_id(1), 2)
    dead = [
        tmp_path / "shards" / ".shard-000007.tar.tmp",
        tmp_path / "stats" / "clips" / ".shard-000007.parquet.tmp",
        tmp_path / ".staging" / "shard-999-dead" / "00000001.tar",
    ]
    for path in dead:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    orphan = tmp_path / "shards" / "shard-000008.tar"  # renamed, clips Parquet never written
    orphan.write_bytes((tmp_path / "shards" / "shard-000000.tar").read_bytes())
    assert not validate(tmp_path).ok

    live = ShardWriter(tmp_path, max_clips=2)
    write_video(live, video_id(2), 1)  # committed into the live writer's open shard
    (open_shard,) = set((tmp_path / "shards").glob(".*.tmp")) - set(dead)
    staging = live.begin_video(video_id(3))
    fields, row = encoded_clip(video_id(3), 0)
    staging.add(fields, row)
    assert remove_leftovers(tmp_path) == 4
    assert not any(p.exists() for p in [*dead, orphan])
    assert open_shard.exists() and staging.path.exists()  # locked by the live writer: kept
    staging.commit(ok_video_row(video_id(3), [row]))
    live.close()
    assert len(shard_paths(tmp_path)) == 2 and read_clips(tmp_path).num_rows == 4
    assert validate(tmp_path).ok
    assert remove_leftovers(tmp_path) == 0
