"""The paper-style summary, its text report and its plots (stats.py)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pyarrow as pa
import pytest

from shards.schema import CLIP_SCHEMA, VIDEO_SCHEMA, ClipRow, VideoRow, rows_to_table
from shards.stats import PAPER, format_summary, summarize, write_plots

BG = [0.2, 0.5, 0.9, 1.5, 3.0, 8.0, None, 0.1]
CHARS = [0, 1, 1, 2, 2, 3, 1, 4]
OCC = [None, None, None, 0.1, 0.3, 0.2, None, None]


def clip(i: int) -> ClipRow:
    return ClipRow(
        key=f"v{i % 3}_{i:07d}",
        shard="shard-000000.tar",
        video_id=f"v{i % 3}",
        source="/x.mp4",
        clip_index=i,
        start_frame=0,
        end_frame=29,
        n_frames=30,
        fps=15.0,
        width=64,
        height=48,
        map_width=16,
        map_height=12,
        n_tracks=CHARS[i],
        bg_flow_mean=BG[i],
        bg_flow_p95=None,
        occlusion_rate_mean=OCC[i],
        occlusion_rate_max=OCC[i],
        characters_max=CHARS[i],
        characters_mode=CHARS[i],
        multi_character_frac=1.0 if CHARS[i] >= 2 else 0.0,
        pose_score_mean=None,
    )


def video(vid: str, status: str, chars: int | None, bg: float | None, occ: float | None = None,
          stage: str | None = None, error: str | None = None) -> VideoRow:  # fmt: skip
    return VideoRow(
        video_id=vid,
        source=f"/{vid}.mp4",
        status=status,
        error_stage=stage,
        error=error,
        duration_s=360.0 if status == "ok" else None,
        characters_max=chars,
        bg_flow_mean=bg,
        occlusion_rate_mean=occ,
    )


@pytest.fixture
def tables() -> tuple[pa.Table, pa.Table]:
    clips = rows_to_table([clip(i) for i in range(len(BG))], CLIP_SCHEMA)
    videos = rows_to_table(
        [
            video("v0", "ok", 1, 0.4),
            video("v1", "ok", 2, 2.0, occ=0.15),
            video("v2", "ok", 3, 5.0, occ=0.25),
            video("v3", "ok", 0, None),
            video("v4", "failed", None, None, stage="pose", error="ValueError: no poses in a"),
            video("v5", "failed", None, None, stage="pose", error="ValueError: no poses in b"),
            video("v6", "failed", None, None, stage="decode", error="InvalidDataError: eof"),
            video("v7", "skipped", None, None, stage="decode", error="no shot long enough"),
        ],
        VIDEO_SCHEMA,
    )
    return clips, videos


def test_summary_numbers(tables: tuple[pa.Table, pa.Table]) -> None:
    s = summarize(*tables)
    t = s["totals"]
    assert t["videos"] == 8 and t["videos_by_status"] == {"ok": 4, "failed": 3, "skipped": 1}
    assert (t["clips"], t["frames"], t["shards"]) == (8, 240, 1)
    assert t["clip_hours"] == pytest.approx(8 * 2 / 3600)
    assert t["source_hours"] == pytest.approx(4 * 0.1)
    known = [b for b in BG if b is not None]
    assert s["bg_flow"]["below_1px"]["clips"] == pytest.approx(4 / 7)
    assert s["bg_flow"]["below_1px"]["videos"] == pytest.approx(1 / 3)
    assert s["bg_flow"]["quantiles"]["clips"]["p50"] == pytest.approx(np.quantile(known, 0.5))
    assert s["bg_flow"]["quantiles"]["clips"]["n"] == 7
    chars = s["characters"]["clips"]
    assert chars["counts"] == {"0": 1, "1": 3, "2": 2, "3+": 2}
    assert chars["shares"]["1"] == pytest.approx(3 / 8)
    assert chars["shares_of_nonzero"]["1"] == pytest.approx(3 / 7)
    assert s["characters"]["videos"]["counts"] == {"0": 1, "1": 1, "2": 1, "3+": 1}
    occ = s["occlusion"]["clips"]
    assert occ["n"] == 3
    assert [occ["p25"], occ["p50"], occ["p75"]] == pytest.approx(
        list(np.quantile([0.1, 0.3, 0.2], [0.25, 0.5, 0.75]))
    )
    assert s["occlusion"]["videos"]["n"] == 2 and s["occlusion"]["videos"]["p50"] == 0.2
    assert [(f["status"], f["stage"], f["reason"], f["count"]) for f in s["failures"]] == [
        ("failed", "pose", "ValueError", 2),
        ("failed", "decode", "InvalidDataError", 1),
        ("skipped", "decode", "no shot long enough", 1),
    ]
    json.dumps(s, allow_nan=False)  # JSON-safe


def test_report_is_aligned_and_shows_the_paper(tables: tuple[pa.Table, pa.Table]) -> None:
    text = format_summary(summarize(*tables))
    line = next(x for x in text.splitlines() if "share < 1 px" in x)
    assert line.split()[-3:] == ["57.14%", "33.33%", "12.00%"]
    assert "66.25%" in text and "4.25%" in text and "0.13" in text
    table_lines = [x for x in text.splitlines() if x.startswith(("  p", "  share"))]
    assert len({len(x) for x in table_lines}) == 1, table_lines  # right-aligned columns
    assert "     2  failed   pose       ValueError" in text


def test_empty_tables_summarize_to_nones(tmp_path: Path) -> None:
    s = summarize(CLIP_SCHEMA.empty_table(), VIDEO_SCHEMA.empty_table())
    assert s["totals"]["clips"] == 0 and s["bg_flow"]["below_1px"]["videos"] is None
    assert s["occlusion"]["clips"]["p50"] is None and s["failures"] == []
    assert "none" in format_summary(s)
    assert len(write_plots(CLIP_SCHEMA.empty_table(), VIDEO_SCHEMA.empty_table(), tmp_path)) == 3


def test_plots_are_pngs(tables: tuple[pa.Table, pa.Table], tmp_path: Path) -> None:
    paths = [Path(p) for p in write_plots(*tables, tmp_path / "plots")]
    assert [p.name for p in paths] == ["bg_flow_mean.png", "occlusion_rate.png", "characters.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(p)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something was drawn


def test_paper_reference_numbers() -> None:
    assert sum(PAPER["characters_videos"].values()) == pytest.approx(1.0)
    assert PAPER["occlusion_quartiles_videos"] == {"p25": 0.05, "p50": 0.13, "p75": 0.21}
