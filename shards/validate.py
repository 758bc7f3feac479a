"""``python -m shards validate``: every tar against its Parquet rows, every field decoded.

Checked: no tmp files or staging leftovers; every tar has its clips Parquet file and vice
versa; Parquet schemas are the contract's; tar members are ``KEY.FIELD`` with known fields and
contiguous samples; a tar's keys equal its rows' keys; every field of every sample decodes;
the arrays agree with each other (T, P, map size) and with the row (``n_frames``, ``width``,
``height``, ``map_width``, ``map_height``, ``n_tracks``, ``fps``); keys are unique; every
clip's video has a row; an ok video's ``n_clips``/``n_frames`` match its clip rows and its
statistics (``bg_flow_mean``, ``occlusion_rate_mean``, ``characters_max``,
``multi_character_frac``) equal their aggregation over those rows (:func:`video_stats`,
docs/design.md §3), and a failed or skipped video has none; every sample's
``format_version`` is the one this code reads (``schema.check_format_version``).

A remote output (``s3://...``) is read through ``shards.storage`` and checked the same way,
except for leftovers: tmp and staging files exist only in local outputs (a remote writer
works in a private local folder), so those checks run on local outputs only, and the report
says so.
"""

from __future__ import annotations

import logging
import math
import tarfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shards.codec import decode_sample, sample_shape_errors
from shards.schema import (
    CLIP_SCHEMA,
    CLIPS_DIR,
    FIELDS,
    KEY_RE,
    REQUIRED_FIELDS,
    SHARDS_DIR,
    STAGING_DIR,
    VIDEO_SCHEMA,
    VIDEOS_DIR,
    FormatVersionError,
    Sample,
)
from shards.storage import (
    PathLike,
    canonical,
    is_dir,
    is_remote,
    is_tmp_name,
    list_dir,
    open_input,
    read_bytes,
    uri_join,
)

log = logging.getLogger(__name__)

STAT_RTOL = 1e-4
"""Relative tolerance of a video statistic against its clips' aggregation. Not 0: a resumed
video's row aggregates the re-run's clip rows, while clips already committed by the killed
run keep their earlier rows (the same clips, computed again: equal up to float noise of the
flow and pose backends). A wrong aggregation (unweighted, wrong weights) differs by far more."""
STAT_ATOL = 1e-6


@dataclass
class Report:
    """What ``validate`` found: counts and one line per problem."""

    root: str
    shards: int = 0
    clips: int = 0
    samples: int = 0
    videos: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was not checked, and why."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def format(self, limit: int = 100) -> str:
        videos = ", ".join(f"{n} {s}" for s, n in sorted(self.videos.items())) or "none"
        lines = [
            f"validated {self.root}: {self.shards} shards, {self.samples} samples decoded, "
            f"{self.clips} clip rows, videos: {videos}"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems[:limit]]
            if len(self.problems) > limit:
                lines.append(f"  ... and {len(self.problems) - limit} more")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def validate(root: PathLike) -> Report:
    """Check an output (a local folder or a URI) end to end; never modifies it."""
    out = canonical(root)
    report = Report(out)
    if not is_dir(uri_join(out, SHARDS_DIR)) and not is_dir(uri_join(out, VIDEOS_DIR)):
        report.add(out, "not a preprocessing output (no shards/ or stats/videos/)")
        return report
    if is_remote(out):
        report.notes.append(
            "leftover checks (tmp files, staging files) are local-only: skipped for a remote "
            "output (remote writers leave none there)"
        )
    else:
        _check_leftovers(Path(out), report)
    tars = _listing(out, SHARDS_DIR, ".tar", report)
    parquets = _listing(out, CLIPS_DIR, ".parquet", report)
    for stem in sorted(tars.keys() - parquets.keys()):
        report.add(f"shards/{stem}.tar", "no clips Parquet file (orphan shard)")
    for stem in sorted(parquets.keys() - tars.keys()):
        report.add(f"stats/clips/{stem}.parquet", "no shard tar (orphan Parquet file)")
    all_rows: list[dict[str, Any]] = []
    for stem in sorted(tars.keys() & parquets.keys()):
        rows = _read_rows(parquets[stem], CLIP_SCHEMA, report)
        if rows is not None:
            _check_shard(tars[stem], rows, report)
            all_rows += rows
        report.shards += 1
    videos: list[dict[str, Any]] = []
    for path in _listing(out, VIDEOS_DIR, ".parquet", report).values():
        videos += _read_rows(path, VIDEO_SCHEMA, report) or []
    _check_tables(all_rows, videos, report)
    return report


def _check_leftovers(out: Path, report: Report) -> None:
    for path in sorted(p for p in out.rglob(".*") if p.is_file() and is_tmp_name(p.name)):
        report.add(str(path.relative_to(out)), "tmp file left by an interrupted writer")
    staging = out / STAGING_DIR
    if staging.is_dir() and any(p.is_file() for p in staging.rglob("*")):
        report.add(STAGING_DIR, "staging files left by a writer (running, or crashed)")


def _listing(root: str, sub: str, suffix: str, report: Report) -> dict[str, str]:
    """stem -> path of the visible ``*{suffix}`` files; anything else visible is a problem."""
    found: dict[str, str] = {}
    for entry in list_dir(uri_join(root, sub)):
        if entry.is_file and entry.name.endswith(suffix):
            found[entry.name.removesuffix(suffix)] = entry.path
        else:
            report.add(entry.path, f"unexpected entry (expected *{suffix} files only)")
    return found


def _read_rows(path: str, schema: Any, report: Report) -> list[dict[str, Any]] | None:
    try:
        table = pq.read_table(pa.BufferReader(read_bytes(path)))
    except Exception as exc:
        report.add(str(path), f"unreadable Parquet: {exc}")
        return None
    if not table.schema.equals(schema):
        report.add(str(path), "schema differs from the contract (shards/schema.py)")
        return None
    return table.to_pylist()


def _check_shard(tar_path: str, rows: list[dict[str, Any]], report: Report) -> None:
    name = tar_path.rsplit("/", 1)[-1]
    where = f"shards/{name}"
    by_key = {r["key"]: r for r in rows}
    if len(by_key) != len(rows):
        report.add(where, "its Parquet file lists a key twice")
    for r in rows:
        if r["shard"] != name:
            report.add(where, f"row {r['key']} says shard {r['shard']!r}")
    seen: set[str] = set()
    try:
        for key, raw in _tar_samples(tar_path, where, report):
            if key in seen:
                report.add(where, f"sample {key} appears twice")
            seen.add(key)
            row = by_key.get(key)
            if row is None:
                report.add(where, f"sample {key} has no row in its Parquet file")
                continue
            for problem in check_sample(raw, row):
                report.add(where, f"sample {key}: {problem}")
            report.samples += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        report.add(where, f"unreadable tar: {exc}")
    for key in sorted(by_key.keys() - seen):
        report.add(where, f"row {key} has no sample in the tar")
    log.debug("checked %s: %d samples", where, len(seen))


def _tar_samples(path: str, where: str, report: Report) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, raw fields) of each run of members ``KEY.FIELD`` with the same key."""
    current: dict[str, Any] | None = None
    with open_input(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            key, _, name = member.name.partition(".")
            reader = tar.extractfile(member) if member.isfile() else None
            if reader is None or not KEY_RE.fullmatch(key) or name not in FIELDS:
                report.add(where, f"unexpected member {member.name!r}")
                continue
            if current is not None and current["__key__"] != key:
                yield current["__key__"], current
                current = None
            current = current or {"__key__": key}
            if name in current:
                report.add(where, f"member {member.name} appears twice")
            current[name] = reader.read()
            tar.members = []  # type: ignore[attr-defined]
    if current is not None:
        yield current["__key__"], current


def check_sample(raw: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """Problems of one raw sample against its clips row (empty when it is consistent)."""
    missing = [f for f in REQUIRED_FIELDS if f not in raw]
    if missing:
        return [f"missing fields {missing}"]
    try:
        sample = decode_sample(raw)
    except FormatVersionError as exc:  # the same message for every sample of an old output
        return [str(exc).removeprefix(f"sample {raw['__key__']}: ")]
    except Exception as exc:
        return [f"does not decode: {type(exc).__name__}: {exc}"]
    return sample_shape_errors(sample) + _row_mismatches(sample, row)


def _row_mismatches(sample: Sample, row: dict[str, Any]) -> list[str]:
    t, h, w = sample.frames.shape[:3]
    got = {
        "n_frames": t,
        "height": h,
        "width": w,
        "map_height": sample.flow.shape[1],
        "map_width": sample.flow.shape[2],
        "n_tracks": sample.pose.shape[1],
    }
    problems = [f"{k} is {v}, its row says {row[k]}" for k, v in got.items() if v != row[k]]
    if abs(sample.fps - row["fps"]) > 1e-3 * max(row["fps"], 1.0):
        problems.append(f"fps is {sample.fps:g}, its row says {row['fps']:g}")
    if sample.meta.get("video_id", row["video_id"]) != row["video_id"]:
        problems.append(f"json video_id {sample.meta['video_id']} != row {row['video_id']}")
    return problems


def _check_tables(
    clips: list[dict[str, Any]], videos: list[dict[str, Any]], report: Report
) -> None:
    report.clips = len(clips)
    report.videos = Counter(v["status"] for v in videos)
    for key, n in Counter(r["key"] for r in clips).items():
        if n > 1:
            report.add("stats/clips", f"key {key} is in {n} rows")
    per_video: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in clips:
        per_video[r["video_id"]].append(r)
    for vid, n in Counter(v["video_id"] for v in videos).items():
        if n > 1:
            report.add("stats/videos", f"video {vid} has {n} rows")
    for v in videos:
        rows = per_video.get(v["video_id"], [])
        frames = sum(r["n_frames"] for r in rows)
        if v["status"] == "ok" and (v["n_clips"], v["n_frames"]) != (len(rows), frames):
            report.add(
                "stats/videos",
                f"ok video {v['video_id']} says {v['n_clips']} clips / {v['n_frames']} frames, "
                f"the clips table has {len(rows)} / {frames}",
            )
        elif v["status"] != "ok" and rows:
            report.add("stats/videos", f"{v['status']} video {v['video_id']} has clip rows")
        if v["status"] == "ok" and rows:
            for name, want in video_stats(rows).items():
                if not _same_stat(v[name], want):
                    report.add(
                        "stats/videos",
                        f"ok video {v['video_id']} says {name} = {v[name]}, its clips aggregate "
                        f"to {want} (docs/design.md §3)",
                    )
    orphans = sorted(per_video.keys() - {v["video_id"] for v in videos})
    if orphans:
        report.add(
            "stats/clips",
            f"clips of {len(orphans)} video(s) without a video row, e.g. {orphans[0]} "
            "(an interrupted run; re-running it completes them)",
        )


def video_stats(clips: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """A video's statistics from its clips rows, as docs/design.md §3 defines them.

    ``bg_flow_mean``: clip values weighted by their ``n_frames - 1`` flow frames;
    ``occlusion_rate_mean``: weighted by their frames with >= 2 characters
    (``multi_character_frac * n_frames``); ``multi_character_frac``: weighted by ``n_frames``;
    ``characters_max``: the max (0 without clips). Null clip values carry no weight; a mean
    with no weight at all is None. Written here from the definitions, separately from the
    job's ``preprocess.runner.video_row_ok``, so that ``validate`` checks what the job wrote.
    """

    def mean(pairs: list[tuple[float | None, float]]) -> float | None:
        kept = [(v, w) for v, w in pairs if v is not None and w > 0]
        total = math.fsum(w for _, w in kept)
        return math.fsum(v * w for v, w in kept) / total if total > 0 else None

    return {
        "bg_flow_mean": mean([(c["bg_flow_mean"], c["n_frames"] - 1) for c in clips]),
        "occlusion_rate_mean": mean(
            [(c["occlusion_rate_mean"], c["multi_character_frac"] * c["n_frames"]) for c in clips]
        ),
        "characters_max": max((int(c["characters_max"]) for c in clips), default=0),
        "multi_character_frac": mean([(c["multi_character_frac"], c["n_frames"]) for c in clips]),
    }


def _same_stat(got: float | int | None, want: float | int | None) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=STAT_RTOL, abs_tol=STAT_ATOL)
