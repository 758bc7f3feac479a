"""A video's staging (staging.py) on its own: the writer's transaction arrives as callbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from shards.schema import VideoRow
from shards.staging import VideoStaging
from tests.shards.synthetic import encoded_clip, ok_video_row, video_id

VID = video_id(4)


def test_commit_hands_the_staged_clips_to_the_callback(tmp_path: Path) -> None:
    seen: list[tuple[list[str], str]] = []
    closed: list[VideoStaging] = []

    def on_commit(staging: VideoStaging, row: VideoRow) -> None:
        assert staging.path.exists()  # still there while the writer reads it back
        seen.append(([s["__key__"] for s, _, _ in staging.read_back()], row.video_id))

    staging = VideoStaging(VID, tmp_path / "v.tar", on_commit=on_commit, on_close=closed.append)
    rows = []
    for i in range(2):
        fields, row = encoded_clip(VID, i)
        staging.add(fields, row)
        rows.append(row)
    staging.commit(ok_video_row(VID, rows))
    assert seen == [([r.key for r in rows], VID)]
    assert closed == [staging] and staging.state == "committed" and not staging.path.exists()


def test_a_failed_commit_discards(tmp_path: Path) -> None:
    closed: list[VideoStaging] = []

    def on_commit(staging: VideoStaging, row: VideoRow) -> None:
        raise OSError("disk full")

    staging = VideoStaging(VID, tmp_path / "v.tar", on_commit=on_commit, on_close=closed.append)
    fields, row = encoded_clip(VID, 0)
    staging.add(fields, row)
    with pytest.raises(OSError, match="disk full"):
        staging.commit(ok_video_row(VID, [row]))
    assert closed == [staging] and staging.state == "discarded" and not staging.path.exists()
    staging.discard()  # nothing more to do
    assert closed == [staging]
