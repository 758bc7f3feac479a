"""Video-level statistics of ``stats/videos`` (docs/design.md §3), against hand-computed values.

Three constructed clips whose weights all differ (flow frames ``n_frames - 1``, frames with
>= 2 characters, frames), so that an unweighted mean or a wrong weight gives another number:
the job's aggregation (``preprocess.runner.video_row_ok``), the written Parquet row, and
``python -m shards validate``, which recomputes every ok video's statistics from its clip
rows (``shards.validate.video_stats``) and reports a row that disagrees.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess.clip import VideoInfo
from preprocess.runner import video_row_ok
from shards.reader import read_videos
from shards.schema import VIDEO_SCHEMA, VIDEOS_DIR, ClipRow
from shards.validate import validate, video_stats
from shards.writer import ShardWriter
from tests.shards.synthetic import FPS, H, W, encoded_clip, video_id

VID = video_id(7)
INFO = VideoInfo(f"/videos/{VID}.mp4", VID, W, H, FPS, 56, 0, W, H, FPS, "h264")

# (n_frames, bg_flow_mean, occlusion_rate_mean, multi_character_frac, characters_max)
CLIPS = [
    (16, 1.0, 0.2, 0.25, 2),  # 15 flow frames, 4 frames with >= 2 characters
    (8, 4.0, None, 0.0, 1),  # 7 flow frames, no multi-character frame
    (32, None, 0.5, 0.5, 3),  # no background anywhere; 16 frames with >= 2 characters
]
# By hand, from the definitions of docs/design.md §3:
BG = (1.0 * 15 + 4.0 * 7) / (15 + 7)  # 43/22 = 1.9545; unweighted 2.5, by n_frames 2.0
OCCLUSION = (0.2 * 4 + 0.5 * 16) / (4 + 16)  # 0.44; unweighted 0.35
MULTI = (4 + 0 + 16) / (16 + 8 + 32)  # 5/14 = 0.357; unweighted 0.25
CHARS = 3


def clip_rows() -> list[ClipRow]:
    rows = []
    for i, (n, bg, occ, multi, chars) in enumerate(CLIPS):
        _, row = encoded_clip(VID, i, t=n)
        rows.append(
            replace(
                row,
                bg_flow_mean=bg,
                occlusion_rate_mean=occ,
                occlusion_rate_max=occ,
                multi_character_frac=multi,
                characters_max=chars,
                characters_mode=min(chars, 2),
            )
        )
    return rows


def test_the_job_aggregates_frame_weighted() -> None:
    row = video_row_ok(INFO, clip_rows(), seconds=1.0)
    assert (row.status, row.n_clips, row.n_frames) == ("ok", 3, 56)
    assert row.bg_flow_mean == pytest.approx(BG, rel=1e-12)
    assert row.occlusion_rate_mean == pytest.approx(OCCLUSION, rel=1e-12)
    assert row.multi_character_frac == pytest.approx(MULTI, rel=1e-12)
    assert row.characters_max == CHARS


def test_validate_aggregates_from_the_definitions() -> None:
    stats = video_stats([asdict(r) for r in clip_rows()])
    assert stats == {
        "bg_flow_mean": pytest.approx(BG, rel=1e-12),
        "occlusion_rate_mean": pytest.approx(OCCLUSION, rel=1e-12),
        "characters_max": CHARS,
        "multi_character_frac": pytest.approx(MULTI, rel=1e-12),
    }


def test_nulls_where_nothing_has_weight() -> None:
    """One clip of one frame with one person: no flow frame, no multi-character frame."""
    (row,) = clip_rows()[1:2]
    single = replace(row, n_frames=1, occlusion_rate_mean=None, characters_max=1)
    for stats in (
        asdict(video_row_ok(INFO, [single], seconds=0.0)),
        video_stats([asdict(single)]),
    ):
        assert stats["bg_flow_mean"] is None and stats["occlusion_rate_mean"] is None
        assert (stats["multi_character_frac"], stats["characters_max"]) == (0.0, 1)
    empty = video_row_ok(INFO, [], seconds=0.0)
    assert (empty.status, empty.characters_max, empty.bg_flow_mean) == ("skipped", 0, None)


def write(root: Path) -> Path:
    """An output of the constructed video, its row made by the job's aggregation."""
    rows = clip_rows()
    with ShardWriter(root, max_clips=2) as writer:
        staging = writer.begin_video(VID)
        for i, row in enumerate(rows):
            fields, _ = encoded_clip(VID, i, t=row.n_frames)  # the sample of that row
            staging.add(fields, row)
        staging.commit(video_row_ok(INFO, rows, seconds=1.0))
    return root


def test_written_row_holds_the_hand_values_and_validates(tmp_path: Path) -> None:
    out = write(tmp_path / "out")
    (row,) = read_videos(out).to_pylist()
    assert row["bg_flow_mean"] == pytest.approx(BG, rel=1e-12)
    assert row["occlusion_rate_mean"] == pytest.approx(OCCLUSION, rel=1e-12)
    assert row["multi_character_frac"] == pytest.approx(MULTI, rel=1e-12)
    assert row["characters_max"] == CHARS
    report = validate(out)
    assert report.ok, report.format()


UNWEIGHTED = {
    "bg_flow_mean": (1.0 + 4.0) / 2,
    "occlusion_rate_mean": (0.2 + 0.5) / 2,
    "multi_character_frac": (0.25 + 0.0 + 0.5) / 3,
    "characters_max": 2,  # the first clip's, not the max
}


@pytest.mark.parametrize("column", sorted(UNWEIGHTED))
def test_validate_reports_a_video_row_that_disagrees_with_its_clips(
    tmp_path: Path, column: str
) -> None:
    out = write(tmp_path / "out")
    (path,) = (out / VIDEOS_DIR).glob("*.parquet")
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    value = pa.array([UNWEIGHTED[column]], VIDEO_SCHEMA.field(column).type)
    pq.write_table(table.set_column(index, VIDEO_SCHEMA.field(column), value), path)
    report = validate(out)
    assert not report.ok
    (problem,) = report.problems
    assert problem.startswith(f"stats/videos: ok video {VID} says {column} = ")
    assert "docs/design.md §3" in problem


def test_a_null_where_the_clips_give_a_value_is_reported(tmp_path: Path) -> None:
    out = write(tmp_path / "out")
    (path,) = (out / VIDEOS_DIR).glob("*.parquet")
    table = pq.read_table(path)
    column = "occlusion_rate_mean"
    index = table.schema.get_field_index(column)
    value = pa.array([None], VIDEO_SCHEMA.field(column).type)
    pq.write_table(table.set_column(index, VIDEO_SCHEMA.field(column), value), path)
    (problem,) = validate(out).problems
    assert f"says {column} = None, its clips aggregate to {OCCLUSION}" in problem
