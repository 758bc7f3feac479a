"""``python -m shards browse``: a static, offline HTML browser of a preprocessing output.

The site (a local folder; open ``SITE/index.html`` from ``file://``, no server, nothing
fetched from the network) holds:

- ``index.html``, ``app.js``, ``style.css``: the page (copied from ``shards/browse_assets``);
- ``data.js``: the whole clips table (every Parquet column, full precision), the failed and
  skipped videos with their stage and reason, the ``shards stats`` summary, and which clips
  have media; loaded with a ``<script>`` tag because browsers refuse ``fetch`` on ``file://``;
- ``plots/*.png``: the plots of ``python -m shards stats --plots``;
- ``previews/KEY.jpg`` (the middle frame with the tracked skeletons, drawn as
  ``python -m shards show`` draws them) and ``videos/KEY.mp4`` (the stored clip video, its
  bytes copied as they are) for the first ``previews`` clips of the table only: previews are
  **capped**, not made lazily (a static page cannot make them on demand); a row without one
  names the ``show`` command that draws it. ``sheets/KEY.png|mp4`` (``show``'s contact sheet
  and conditions video) for the first ``sheets`` clips, off by default (seconds per clip).

The page sorts, filters (per-column ranges, text search) and pages through the rows in the
browser (50 rows a page by default, so 10,000 clips stay fast), shows the ``--where``
expression equivalent to its filters, and exports the selected keys as a keys file for
``python -m shards select --keys`` and training's ``data.keys`` (``shards.keys``). Only the
shards holding previewed clips are read.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from preprocess.geometry import GeometryConfig
from shards.codec import decode_sample
from shards.reader import iter_raw, read_clips, read_videos, shard_paths
from shards.schema import CLIP_SCHEMA
from shards.show import ShowOptions, draw_skeletons, output_geometry, render_clip
from shards.stats import format_summary, summarize, write_plots
from shards.storage import PathLike, canonical, is_remote, local_path, write_bytes, write_text
from shards.video import read_video

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("browse_assets")
PAGE_FILES = ("index.html", "app.js", "style.css")
THUMB_HEIGHT = 120
MEDIA_DIRS = ("previews", "videos", "sheets")
ERROR_CHARS = 500


def build_site(root: str | Path, site: PathLike, *, previews: int = 200, sheets: int = 0) -> Path:
    """Write the browser of the output ``root`` (a folder or URI) into the local folder
    ``site``; the path of its ``index.html``. ``previews``: clips (the first of the table)
    that get a thumbnail and their video; ``sheets``: clips that also get ``show``'s contact
    sheet and conditions video."""
    if is_remote(site):
        raise ValueError(f"{site}: the site must be a local folder (it is opened from file://)")
    out = local_path(site)
    out.mkdir(parents=True, exist_ok=True)
    for name in MEDIA_DIRS:  # media of an earlier build would be listed by nothing
        shutil.rmtree(out / name, ignore_errors=True)
    clips, videos = read_clips(root), read_videos(root)
    summary = summarize(clips, videos)
    plots = [Path(p).name for p in write_plots(clips, videos, out / "plots")]
    keys = clips["key"].to_pylist()
    media = write_media(root, out, clips, keys[: max(previews, 0)], max(sheets, 0))
    data = {
        "root": canonical(root),
        "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "columns": [{"name": f.name, "type": _kind(f.type)} for f in CLIP_SCHEMA],
        "rows": _rows(clips.select(CLIP_SCHEMA.names)),
        "media": media,
        "previews": {"limit": previews, "made": len(media), "sheets": sheets},
        "problems": _problem_videos(videos),
        "failures": summary["failures"],
        "summary": format_summary(summary),
        "plots": [f"plots/{p}" for p in plots],
    }
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    write_text(out / "data.js", f"window.MCANIM_DATA = {text};\n")
    for name in PAGE_FILES:
        write_bytes(out / name, (ASSETS / name).read_bytes())
    index = out / "index.html"
    log.info("wrote %s (%d clips, %d with previews)", index, len(keys), len(media))
    return index


def _kind(t: pa.DataType) -> str:
    return "string" if pa.types.is_string(t) else "int" if pa.types.is_integer(t) else "float"


def _clean(value: Any) -> Any:
    """JSON-safe cell: NaN/inf (none are stored, but be safe) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(table: pa.Table) -> list[list[Any]]:
    """Row-major cells (JSON arrays are much smaller than one object per row)."""
    columns = [table[name].to_pylist() for name in table.column_names]
    return [[_clean(v) for v in row] for row in zip(*columns, strict=True)]


def _problem_videos(videos: pa.Table) -> list[dict[str, Any]]:
    """Failed and skipped videos: source, status, stage, reason and the message."""
    rows = videos.select(["video_id", "source", "status", "error_stage", "error"]).to_pylist()
    out = []
    for r in rows:
        if r["status"] == "ok":
            continue
        message = (r["error"] or "").strip()
        reason = message.splitlines()[0].split(":", 1)[0].strip() if message else ""
        out.append({**r, "reason": reason or "(no message)", "error": message[:ERROR_CHARS]})
    return out


def write_media(
    root: str | Path, out: Path, clips: pa.Table, keys: list[str], sheets: int
) -> dict[str, dict[str, str]]:
    """Thumbnails, videos (and sheets) of ``keys``, reading only the shards that hold them;
    key -> {"thumb", "video"[, "sheet", "conditions"]} paths relative to the site."""
    wanted = set(keys)
    pairs = zip(clips["key"].to_pylist(), clips["shard"].to_pylist(), strict=True)
    names = {shard for key, shard in pairs if key in wanted}
    urls = [u for u in shard_paths(root) if Path(u).name in names] if keys else []
    if not urls:
        if keys:
            log.warning("no shard of %s holds the clips to preview: no previews", root)
        return {}
    with_sheet = set(keys[:sheets])
    cfg = output_geometry(root)
    rows = {r["key"]: r for r in clips.to_pylist() if r["key"] in with_sheet}
    media: dict[str, dict[str, str]] = {}

    def select(name: str) -> bool:
        key, _, field = Path(name).name.partition(".")
        return key in wanted and (key in with_sheet or field in ("mp4", "pose.npy", "json"))

    for raw in iter_raw(urls, select):
        key = raw["__key__"]
        entry = {"thumb": f"previews/{key}.jpg", "video": f"videos/{key}.mp4"}
        write_bytes(out / entry["video"], bytes(raw["mp4"]))
        if key in with_sheet:
            sample = decode_sample(raw)
            frames, pose = sample.frames, sample.pose
            sheet, conditions = render_clip(sample, rows[key], cfg, ShowOptions(), out / "sheets")
            entry |= {"sheet": f"sheets/{Path(sheet).name}"}
            if conditions:
                entry |= {"conditions": f"sheets/{Path(conditions).name}"}
        else:  # the frames up to the middle one only, from the copied video file
            pose = decode_sample(raw, ["pose.npy"]).pose  # (T, P, 133, 3)
            frames, _ = read_video(out / entry["video"], max_frames=len(pose) // 2 + 1)
        write_bytes(
            out / entry["thumb"], thumbnail(frames[len(pose) // 2], pose[len(pose) // 2], cfg)
        )
        media[key] = entry
    missing = wanted - set(media)
    if missing:
        log.warning("%d previewed clip(s) not in the shards: %s", len(missing), sorted(missing)[:3])
    return {k: media[k] for k in keys if k in media}


def thumbnail(frame: np.ndarray, pose: np.ndarray, cfg: GeometryConfig) -> bytes:
    """JPEG of a (H, W, 3) frame, ``THUMB_HEIGHT`` high, with its (P, 133, 3) keypoints'
    skeletons drawn as ``show`` draws them (one colour per track)."""
    h, w = frame.shape[:2]
    size = (THUMB_HEIGHT, max(2, round(w * THUMB_HEIGHT / h)))
    small = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    image = draw_skeletons(small, pose, (h, w), cfg.keypoint_threshold)  # (h, w, 3)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    if not ok:
        raise ValueError(f"could not encode a {image.shape} thumbnail")
    return data.tobytes()
