"""The paper-style data analysis of an output (its Appendix A.1, Figs. 11-12).

:func:`summarize` turns the clips and videos tables into a JSON-safe dict; :func:`format_summary`
prints it next to the paper's numbers; :func:`write_plots` draws the histograms. Video-level
figures use ``ok`` videos only; a video's character count is its ``characters_max``.
Occlusion statistics cover multi-character rows (``characters_max >= 2``) with a non-null
occlusion rate. Shares are over the rows where the value is known (non-null).
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure

from shards.storage import PathLike, make_dirs, uri_join, write_bytes

log = logging.getLogger(__name__)

PAPER: dict[str, Any] = {
    "videos": 4017,
    "bg_flow_below_1px_videos": 0.12,
    "characters_videos": {"1": 0.6625, "2": 0.295, "3+": 0.0425},
    "occlusion_quartiles_videos": {"p25": 0.05, "p50": 0.13, "p75": 0.21},
}
"""Appendix A.1 of the paper, over its 4,017 training videos."""

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
CHARACTER_BINS = ("0", "1", "2", "3+")


def summarize(clips: pa.Table, videos: pa.Table) -> dict[str, Any]:
    """Totals, background flow, character counts, occlusion and failures of an output."""
    ok = videos.filter(pc.equal(videos["status"], "ok")) if videos.num_rows else videos
    multi_clips = _multi(clips, "occlusion_rate_mean")
    multi_videos = _multi(ok, "occlusion_rate_mean")
    return {
        "totals": _totals(clips, videos),
        "bg_flow": {
            "below_1px": {
                "clips": _share_below(_floats(clips, "bg_flow_mean"), 1.0),
                "videos": _share_below(_floats(ok, "bg_flow_mean"), 1.0),
            },
            "quantiles": {
                "clips": quantiles(_floats(clips, "bg_flow_mean"), QUANTILES),
                "videos": quantiles(_floats(ok, "bg_flow_mean"), QUANTILES),
            },
        },
        "characters": {
            "clips": character_distribution(_floats(clips, "characters_max")),
            "videos": character_distribution(_floats(ok, "characters_max")),
        },
        "occlusion": {
            "clips": quantiles(multi_clips, (0.25, 0.5, 0.75)),
            "videos": quantiles(multi_videos, (0.25, 0.5, 0.75)),
        },
        "failures": failures(videos),
        "paper": PAPER,
    }


def _totals(clips: pa.Table, videos: pa.Table) -> dict[str, Any]:
    status = Counter(videos["status"].to_pylist()) if videos.num_rows else Counter()
    frames = _floats(clips, "n_frames")
    fps = _floats(clips, "fps")
    durations = _floats(videos, "duration_s")
    return {
        "videos": videos.num_rows,
        "videos_by_status": {s: status.get(s, 0) for s in ("ok", "failed", "skipped")},
        "clips": clips.num_rows,
        "shards": len(set(clips["shard"].to_pylist())) if clips.num_rows else 0,
        "frames": int(frames.sum()),
        "clip_hours": float(np.sum(frames[fps > 0] / fps[fps > 0]) / 3600),
        "source_hours": float(np.nansum(durations) / 3600),
    }


def quantiles(values: np.ndarray, qs: tuple[float, ...]) -> dict[str, Any]:
    """``{"n", "mean", "p25", ...}`` of the non-null values (None when there are none)."""
    v = values[~np.isnan(values)]
    out: dict[str, Any] = {"n": int(v.size), "mean": float(v.mean()) if v.size else None}
    for q in qs:
        out[f"p{round(100 * q)}"] = float(np.quantile(v, q)) if v.size else None
    return out


def character_distribution(counts: np.ndarray) -> dict[str, Any]:
    """Counts and shares of 0 / 1 / 2 / 3+ characters; ``shares_of_nonzero`` leaves 0 out
    (the paper's split, which has no character-less videos)."""
    c = counts[~np.isnan(counts)].astype(int)
    binned = {"0": int((c == 0).sum()), "1": int((c == 1).sum()), "2": int((c == 2).sum())}
    binned["3+"] = int((c >= 3).sum())
    nonzero = c.size - binned["0"]
    return {
        "n": int(c.size),
        "counts": binned,
        "shares": {k: n / c.size if c.size else None for k, n in binned.items()},
        "shares_of_nonzero": {
            k: binned[k] / nonzero if nonzero else None for k in CHARACTER_BINS[1:]
        },
    }


def failures(videos: pa.Table) -> list[dict[str, Any]]:
    """Failed and skipped videos grouped by (status, stage, reason), most frequent first.
    The reason is the message up to its first colon (usually the exception type)."""
    groups: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for row in videos.select(["status", "error_stage", "error"]).to_pylist():
        if row["status"] == "ok":
            continue
        message = (row["error"] or "").strip()
        group = (row["status"], row["error_stage"] or "?", reason_of(message))
        groups[group] += 1
        examples.setdefault(group, message[:200])
    return [
        {"status": s, "stage": st, "reason": r, "count": n, "example": examples[(s, st, r)]}
        for (s, st, r), n in groups.most_common()
    ]


def reason_of(message: str) -> str:
    first = message.splitlines()[0] if message else ""
    return first.split(":", 1)[0].strip()[:80] or "(no message)"


def _floats(table: pa.Table, column: str) -> np.ndarray:
    """A column as float64 with NaN for nulls (empty when the table is)."""
    if table.num_rows == 0:
        return np.zeros(0)
    col = table[column].cast(pa.float64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _share_below(values: np.ndarray, threshold: float) -> float | None:
    v = values[~np.isnan(values)]
    return float((v < threshold).mean()) if v.size else None


def _multi(table: pa.Table, column: str) -> np.ndarray:
    """``column`` of the multi-character rows (characters_max >= 2), nulls dropped."""
    chars, values = _floats(table, "characters_max"), _floats(table, column)
    return values[(chars >= 2) & ~np.isnan(values)]


# -- text --------------------------------------------------------------------------------------


def format_summary(summary: dict[str, Any]) -> str:
    """A readable, aligned report with the paper's numbers alongside."""
    t, bg, ch, occ = (summary[k] for k in ("totals", "bg_flow", "characters", "occlusion"))
    by = ", ".join(f"{k} {v}" for k, v in t["videos_by_status"].items())
    lines = [
        f"videos {t['videos']:>10}   {by}",
        f"clips  {t['clips']:>10}   in {t['shards']} shards",
        f"frames {t['frames']:>10}   {t['clip_hours']:.2f} h of clips, "
        f"{t['source_hours']:.2f} h of source video",
        "",
        _row("", "clips", "videos", "paper A.1"),
        "background-flow mean (px / frame)",
        _row("  share < 1 px", *_pcts(bg["below_1px"]), _pct(PAPER["bg_flow_below_1px_videos"])),
    ]
    for q in QUANTILES:
        name = f"p{round(100 * q)}"
        clips, videos = (_num(bg["quantiles"][k][name]) for k in LEVELS)
        lines.append(_row(f"  {name}", clips, videos, "-"))
    clips, videos = (str(bg["quantiles"][k]["n"]) for k in LEVELS)
    lines.append(_row("  n", clips, videos, str(PAPER["videos"])))
    lines.append("characters (max per clip / video; share)")
    for k in CHARACTER_BINS:
        shares = {level: ch[level]["shares"][k] for level in LEVELS}
        lines.append(_row(f"  {k}", *_pcts(shares), _pct(PAPER["characters_videos"].get(k))))
    lines.append("occlusion rate (characters_max >= 2)")
    for name in ("p25", "p50", "p75"):
        paper = _num(PAPER["occlusion_quartiles_videos"][name])
        clips, videos = (_num(occ[k][name]) for k in LEVELS)
        lines.append(_row(f"  {name}", clips, videos, paper))
    clips, videos = (str(occ[k]["n"]) for k in LEVELS)
    lines.append(_row("  n", clips, videos, "-"))
    lines += ["", "failed / skipped videos by stage and reason"]
    lines += [
        f"  {f['count']:>6}  {f['status']:<8} {f['stage']:<10} {f['reason']}"
        for f in summary["failures"]
    ] or ["  none"]
    return "\n".join(lines)


LEVELS = ("clips", "videos")


def _row(label: str, clips: str, videos: str, paper: str) -> str:
    return f"{label:<28}{clips:>12}{videos:>12}{paper:>12}".rstrip()


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _pcts(by_level: dict[str, float | None]) -> tuple[str, str]:
    return _pct(by_level["clips"]), _pct(by_level["videos"])


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# -- plots -------------------------------------------------------------------------------------


def write_plots(clips: pa.Table, videos: pa.Table, out_dir: PathLike) -> list[str]:
    """PNG histograms like the paper's Fig. 11 (background-flow mean, log x, 1 px line) and
    Fig. 12 (occlusion rate of multi-character clips), plus character-count bars, written to
    a local folder or a URI (``shards.storage``); their paths."""
    out = str(out_dir)
    make_dirs(out)
    ok = videos.filter(pc.equal(videos["status"], "ok")) if videos.num_rows else videos
    summary = summarize(clips, videos)
    paths = [
        _plot_bg_flow(_floats(clips, "bg_flow_mean"), _floats(ok, "bg_flow_mean"), out),
        _plot_occlusion(_multi(clips, "occlusion_rate_mean"), out),
        _plot_characters(summary["characters"], out),
    ]
    log.info("wrote %s", ", ".join(paths))
    return paths


def _plot_bg_flow(clip_values: np.ndarray, video_values: np.ndarray, out: str) -> str:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    lo = 1e-2
    data = [np.clip(v[~np.isnan(v)], lo, None) for v in (clip_values, video_values)]
    hi = max([lo * 10, *(float(d.max()) * 1.5 for d in data if d.size)])
    bins = np.geomspace(lo, hi, 40).tolist()
    for d, label in zip(data, ("clips", "videos (ok)"), strict=True):
        share = f"{100 * (d < 1).mean():.1f}% < 1 px" if d.size else "none"
        ax.hist(d, bins=bins, alpha=0.6, label=f"{label}: n={d.size}, {share}")
    ax.axvline(1.0, color="k", linestyle="--", label="1 px (imperceptible)")
    ax.set_xscale("log")
    ax.set_xlabel(f"background-flow mean (px / frame; values below {lo} shown at {lo})")
    ax.set_ylabel("count")
    ax.set_title("Background-flow mean (cf. paper Fig. 11: 12% of videos < 1 px)")
    ax.legend(fontsize=8)
    return _save(fig, uri_join(out, "bg_flow_mean.png"))


def _plot_occlusion(values: np.ndarray, out: str) -> str:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(
        values, bins=np.linspace(0, 1, 51).tolist(), color="tab:orange", label=f"n={values.size}"
    )
    for q, style in zip((0.25, 0.5, 0.75), (":", "--", ":"), strict=True):
        if values.size:
            ax.axvline(float(np.quantile(values, q)), color="k", linestyle=style)
    ax.set_xlabel("occlusion rate (overlap area / union of character regions)")
    ax.set_ylabel("clips")
    ax.set_title("Occlusion rate of multi-character clips (cf. Fig. 12: 0.05 / 0.13 / 0.21)")
    ax.legend(fontsize=8)
    return _save(fig, uri_join(out, "occlusion_rate.png"))


def _plot_characters(characters: dict[str, Any], out: str) -> str:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(CHARACTER_BINS))
    for offset, level in ((-0.2, "clips"), (0.2, "videos")):
        shares = [characters[level]["shares"][k] or 0.0 for k in CHARACTER_BINS]
        ax.bar(x + offset, shares, width=0.4, label=f"{level} (n={characters[level]['n']})")
    paper = [PAPER["characters_videos"].get(k, np.nan) for k in CHARACTER_BINS]
    ax.plot(x + 0.2, paper, "k_", markersize=20, mew=2, label="paper (videos)")
    ax.set_xticks(x, CHARACTER_BINS)
    ax.set_xlabel("characters (max per clip / video)")
    ax.set_ylabel("share")
    ax.set_title("Character count")
    ax.legend(fontsize=8)
    return _save(fig, uri_join(out, "characters.png"))


def _save(fig: Figure, path: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes(path, buf.getvalue())
    return path
