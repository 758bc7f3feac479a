"""``python -m shards show``: see a clip's conditions — a contact sheet PNG and a short MP4.

For each clip, side by side per frame: (1) the frame with the tracked skeletons, one colour per
track (drawn by the pose guider's renderer, ``preprocess.geometry.render.render_pose``, one
track at a time, its pixels painted in the track's colour); (2) the union mask M as an
outline on the dimmed frame; (3) the depth-order map coloured by rank (front = rank 0); (4) the
flow in the Middlebury colour wheel (Baker et al. 2011; hue = direction, saturation =
magnitude up to the clip's 99th percentile |F|, beyond it darkened as Middlebury's code does).
Below them, a strip plot of the per-frame background-flow magnitude, occlusion rate and
character count, computed with ``preprocess.geometry`` from the stored fields and the output's
``geometry`` config. The files go to a local folder or a URI (``KEY.png``, ``KEY.mp4``);
only the shards holding the shown clips are read (``shards.reader.iter_samples(keys=...)``).
The dataset browser (``shards.browse``) uses the same drawing for its thumbnails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from preprocess.geometry import (
    GeometryConfig,
    background_flow_magnitude,
    dilation_masks,
    occlusion_rate,
    present_characters,
)
from preprocess.geometry.render import render_pose, visible
from shards.colors import RANK_COLORS, TRACK_COLORS, flow_to_color, order_to_color
from shards.config import config_from_dict
from shards.keys import keys_in_table
from shards.reader import iter_samples, read_clips
from shards.schema import CONFIG_FILE, Sample
from shards.storage import PathLike, read_text, uri_join, write_bytes
from shards.video import write_video

log = logging.getLogger(__name__)

OUTLINE = (255, 255, 0)
TITLES = ("skeletons (track colours)", "union mask M", "depth order")
GAP = 4
TEXT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class ShowOptions:
    """How a clip is drawn."""

    height: int = 256
    """Panel height in pixels (width follows the clip's aspect)."""
    rows: int = 6
    """Frames shown in the contact sheet, evenly spaced over the clip."""
    max_frames: int = 64
    """Frames in the MP4 (the first ones; 0: all)."""
    video: bool = True
    """Also write the MP4."""


# -- per-frame statistics ------------------------------------------------------------------


def frame_series(sample: Sample, cfg: GeometryConfig) -> dict[str, np.ndarray]:
    """(T,) per-frame series of a decoded clip: ``bg_flow`` (mean |F| outside the stored
    union mask, px/frame; NaN for frame 0, whose flow is not defined, and where M covers
    everything), ``occlusion`` (area covered by >= 2 characters / union, from the skeletal
    masks of the geometry config; NaN with < 2 characters) and ``characters`` (present)."""
    t = len(sample.pose)
    frame_size = sample.frames.shape[1:3]
    map_size = sample.mask.shape[1:]
    thr, min_kp = cfg.keypoint_threshold, cfg.min_keypoints
    present = present_characters(sample.pose, thr, min_kp)  # (T, P)
    bg = np.full(t, np.nan)
    occlusion = np.full(t, np.nan)
    for i in range(t):
        if i > 0:
            bg[i] = background_flow_magnitude(sample.flow[i], sample.mask[i])
        if present[i].sum() >= 2:
            masks = dilation_masks(
                sample.pose[i], frame_size, map_size, keypoint_threshold=thr,
                limb_width=cfg.limb_width, dilation=cfg.dilation, min_keypoints=min_kp,
            )  # fmt: skip
            rate = occlusion_rate(masks, present[i])
            occlusion[i] = np.nan if rate is None else rate
    return {"bg_flow": bg, "occlusion": occlusion, "characters": present.sum(-1)}


# -- panels --------------------------------------------------------------------------------


def panel_size(frame_size: tuple[int, int], height: int) -> tuple[int, int]:
    """(h, w) of a panel ``height`` pixels high with the frame's aspect; both even."""
    h = max(2, height - height % 2)
    w = max(2, round(frame_size[1] * h / frame_size[0] / 2) * 2)
    return h, w


def draw_skeletons(
    frame: np.ndarray, pose: np.ndarray, frame_size: tuple[int, int], threshold: float
) -> np.ndarray:
    """(h, w, 3) RGB image of the frame with each track's skeleton in its colour: (P, 133, 3)
    keypoints in ``frame_size`` pixels, each track drawn alone by ``render_pose`` and its
    pixels painted ``TRACK_COLORS[p]`` (brightness from the drawing: limbs 60 %, joints 100 %),
    labelled with its track index."""
    out = frame.copy()
    size = out.shape[:2]
    for p in np.flatnonzero(visible(pose[..., 2], threshold).any(-1)):
        rgb = render_pose(pose[p][None], frame_size, size, threshold)  # (h, w, 3)
        drawn = cv2.max(cv2.max(rgb[..., 0], rgb[..., 1]), rgb[..., 2])  # (h, w)
        on = drawn > 0
        if not on.any():
            continue
        color = np.array(TRACK_COLORS[p % len(TRACK_COLORS)], np.float32)
        shade = 0.35 + 0.65 * drawn[on, None].astype(np.float32) / 255  # (N, 1)
        out[on] = (color * shade).astype(np.uint8)
        ys, xs = np.nonzero(on)
        top = int(np.argmin(ys))
        anchor = (int(xs[top]), max(10, int(ys[top]) - 3))
        cv2.putText(out, str(p), anchor, TEXT, 0.4, TRACK_COLORS[p % 10], 1, cv2.LINE_AA)
    return out


def draw_outline(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(h, w, 3) dimmed frame with the (mh, mw) mask's outline (and a light tint inside)."""
    h, w = frame.shape[:2]
    soft = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    inside = soft >= 0.5  # (h, w)
    out = (frame * 0.45).astype(np.uint8)
    out[inside] = (out[inside] * 0.6 + np.array(OUTLINE) * 0.15).astype(np.uint8)
    contours, _ = cv2.findContours(inside.view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, OUTLINE, 2)
    return out


@dataclass
class ClipView:
    """One clip's drawing: panel size, sheet width, flow scale, the strip plot."""

    sample: Sample
    cfg: GeometryConfig
    size: tuple[int, int]
    """(h, w) of a panel."""
    width: int
    """Width of the sheet and of the MP4's frames (even)."""
    flow_radius: float
    """|F| (px/frame) at full saturation: the 99th percentile of the clip's frames >= 1."""
    picks: list[int]
    """Frames of the contact sheet (evenly spaced, first and last included)."""
    plot: np.ndarray
    """(H, width, 3) uint8 RGB strip plot, the picked frames dotted."""
    column: Callable[[int], int]
    """Frame index -> pixel column of the strip plot."""

    @classmethod
    def of(cls, sample: Sample, cfg: GeometryConfig, options: ShowOptions) -> ClipView:
        t = len(sample.frames)
        size = panel_size(sample.frames.shape[1:3], options.height)
        width = max(4 * size[1] + 3 * GAP, 720)
        magnitude = np.hypot(sample.flow[1:, ..., 0], sample.flow[1:, ..., 1])  # (T-1, h, w)
        radius = float(np.percentile(magnitude, 99)) if magnitude.size else 1.0
        picks = sorted(
            {round(float(x)) for x in np.linspace(0, t - 1, max(1, min(options.rows, t)))}
        )
        plot, column = strip_plot(frame_series(sample, cfg), width, picks)
        return cls(sample, cfg, size, width, max(radius, 1e-3), picks, plot, column)

    def panels(self, t: int) -> list[np.ndarray]:
        """The four (h, w, 3) uint8 RGB panels of frame ``t``."""
        s, wh = self.sample, self.size[::-1]
        frame = cv2.resize(s.frames[t], wh, interpolation=cv2.INTER_AREA)
        order = order_to_color(s.order[t], self.cfg.order_levels)
        flow = flow_to_color(s.flow[t], self.flow_radius)
        return [
            draw_skeletons(frame, s.pose[t], s.frames.shape[1:3], self.cfg.keypoint_threshold),
            draw_outline(frame, s.mask[t]),
            cv2.resize(order, wh, interpolation=cv2.INTER_NEAREST_EXACT),  # centre to centre
            cv2.resize(flow, wh, interpolation=cv2.INTER_LINEAR),
        ]

    def titles(self) -> np.ndarray:
        """(20, width, 3) bar naming the panels, with the rank colours and the colour wheel."""
        pw = self.size[1]
        x0 = (self.width - (4 * pw + 3 * GAP)) // 2
        bar = np.full((20, self.width, 3), 24, np.uint8)
        names = [*TITLES[:3], f"flow, r={self.flow_radius:.2g}px/f"]
        for i, name in enumerate(names):
            x = x0 + i * (pw + GAP)
            room = pw - (4 * 16 + 4 if i == 2 else 22 if i == 3 else 0)
            _fit_text(bar, name, x + 3, room - 6)
            if i == 2:  # rank legend: 0 (front) .. 3+
                for r, color in enumerate(RANK_COLORS):
                    cv2.rectangle(
                        bar, (x + room + 16 * r, 4), (x + room + 16 * r + 12, 16), color, -1
                    )
            if i == 3:  # the wheel: flow of radius r in every direction
                yy, xx = np.mgrid[-8:9, -8:9].astype(np.float32)
                disc = flow_to_color(np.stack([xx, yy], -1), 8.0)  # (17, 17, 3)
                inside = (xx**2 + yy**2 <= 64)[..., None]
                view = bar[2:19, x + room : x + room + 17]
                view[:] = np.where(inside, disc, view)
        return bar


def _fit_text(image: np.ndarray, text: str, x: int, room: int, y: int = 14) -> None:
    """Draw ``text`` at (x, y) at the largest scale <= 0.4 that fits ``room`` pixels
    (cut short below scale 0.3)."""
    scale = 0.4
    while scale > 0.3 and cv2.getTextSize(text, TEXT, scale, 1)[0][0] > room:
        scale -= 0.02
    while len(text) > 1 and cv2.getTextSize(text, TEXT, scale, 1)[0][0] > room:
        text = text[:-1]
    cv2.putText(image, text, (x, y), TEXT, scale, (235, 235, 235), 1, cv2.LINE_AA)


def _row(panels: list[np.ndarray], width: int) -> np.ndarray:
    """Panels side by side, GAP apart, centred in a black strip ``width`` wide."""
    h = panels[0].shape[0]
    out = np.zeros((h, width, 3), np.uint8)
    x = (width - (sum(p.shape[1] for p in panels) + GAP * (len(panels) - 1))) // 2
    for p in panels:
        out[:, x : x + p.shape[1]] = p
        x += p.shape[1] + GAP
    return out


def strip_plot(
    series: dict[str, np.ndarray], width: int, marks: list[int]
) -> tuple[np.ndarray, Callable[[int], int]]:
    """(H, width, 3) uint8 RGB plot of the per-frame series, frames ``marks`` as dotted lines,
    and a function frame index -> pixel column (for the MP4's cursor)."""
    t = np.arange(len(series["characters"]))
    fig = Figure(figsize=(width / 100, 2.2), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    specs = (
        ("bg_flow", "bg flow\npx/frame", "tab:blue", "default"),
        ("occlusion", "occlusion", "tab:orange", "default"),
        ("characters", "characters", "tab:green", "steps-mid"),
    )
    for ax, (name, label, color, style) in zip(axes, specs, strict=True):
        values = series[name]
        ax.plot(t, values, color=color, drawstyle=style, marker=".", markersize=3)
        ax.set_ylabel(label, fontsize=7)
        ax.tick_params(labelsize=7)
        if np.isnan(values.astype(float)).all():
            ax.text(0.5, 0.5, "undefined in every frame", transform=ax.transAxes, fontsize=7,
                    ha="center", va="center", color="0.4")  # fmt: skip
        for m in marks:
            ax.axvline(m, color="0.6", linestyle=":", linewidth=0.8)
    axes[-1].set_xlabel("frame", fontsize=7)
    axes[-1].set_xlim(-0.5, max(len(t) - 0.5, 0.5))
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)
    transform = axes[-1].transData

    def column(i: int) -> int:
        return round(float(transform.transform((i, 0))[0]))

    return image[:, :width], column


# -- a clip --------------------------------------------------------------------------------


def _header(view: ClipView, row: dict[str, Any]) -> np.ndarray:
    sample = view.sample
    src = str(row.get("source") or sample.meta.get("source", "")).rsplit("/", 1)[-1]
    t, h, w = sample.frames.shape[:3]
    bg = row.get("bg_flow_mean")
    text = (
        f"{sample.key}  {src}  {t} frames {w}x{h}  characters_max {row.get('characters_max')}  "
        f"bg_flow_mean {'-' if bg is None else f'{bg:.3g}'}"
    )
    bar = np.full((24, view.width, 3), 24, np.uint8)
    _fit_text(bar, text, 4, view.width - 8, y=17)
    return bar


def contact_sheet(view: ClipView, row: dict[str, Any]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: header, titles, the picked frames, the strip plot."""
    parts = [_header(view, row), view.titles()]
    for i in view.picks:
        panels = view.panels(i)
        cv2.putText(panels[0], f"t={i}", (4, 14), TEXT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        parts += [_row(panels, view.width), np.zeros((GAP, view.width, 3), np.uint8)]
    return np.concatenate([*parts, view.plot])


def clip_video(view: ClipView, max_frames: int) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB frames of the MP4: titles, the panels, the strip plot with a
    cursor at the current frame; H and W even."""
    total = len(view.sample.frames)
    t = total if max_frames <= 0 else min(max_frames, total)
    titles = view.titles()
    frames = []
    for i in range(t):
        cursor = view.plot.copy()
        x = min(max(view.column(i), 0), view.width - 2)
        cursor[:, x : x + 2] = (214, 39, 40)
        frames.append(np.concatenate([titles, _row(view.panels(i), view.width), cursor]))
    video = np.stack(frames)  # (F, H, W, 3)
    return video[:, : video.shape[1] - video.shape[1] % 2, : view.width - view.width % 2]


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as PNG")
    return data.tobytes()


def output_geometry(root: str | Path) -> GeometryConfig:
    """The ``geometry`` section of ``OUT/config.yaml`` (defaults, with a warning, without one)."""
    text = read_text(uri_join(root, CONFIG_FILE))
    if text is None:
        log.warning("%s has no %s: using the default geometry config", root, CONFIG_FILE)
        return GeometryConfig()
    return config_from_dict(GeometryConfig, (yaml.safe_load(text) or {}).get("geometry", {}))


def show(
    root: str | Path,
    out_dir: PathLike,
    *,
    keys: list[str] | None = None,
    where: str | None = None,
    limit: int = 4,
    options: ShowOptions = ShowOptions(),
) -> list[str]:
    """Write ``KEY.png`` (and ``KEY.mp4``) to ``out_dir`` for the clips named by ``keys`` and/or
    matching ``where`` (at most ``limit``, in table order; 0: no limit); the written paths.
    Only the shards holding those clips are opened."""
    table = read_clips(root, where=where)
    if keys:
        table = keys_in_table(table, keys, "--key")
    if limit > 0:
        table = table.slice(0, limit)
    rows = {r["key"]: r for r in table.to_pylist()}
    if not rows:
        raise ValueError(f"{root}: no clip matches (where={where!r}, keys={keys})")
    cfg = output_geometry(root)
    written: list[str] = []
    for sample in iter_samples(root, keys=list(rows)):
        sheet, movie = render_clip(sample, rows[sample.key], cfg, options, out_dir)
        written += [sheet] if movie is None else [sheet, movie]
    return written


def render_clip(
    sample: Sample,
    row: dict[str, Any],
    cfg: GeometryConfig,
    options: ShowOptions,
    out_dir: PathLike,
) -> tuple[str, str | None]:
    """Write one decoded clip's ``KEY.png`` (and ``KEY.mp4``) to ``out_dir`` (a folder or a
    URI); their paths. ``row`` is its clips-table row (for the header)."""
    view = ClipView.of(sample, cfg, options)
    sheet = uri_join(str(out_dir), f"{sample.key}.png")
    write_bytes(sheet, encode_png(contact_sheet(view, row)))
    movie = None
    if options.video:
        movie = uri_join(str(out_dir), f"{sample.key}.mp4")
        write_video(movie, clip_video(view, options.max_frames), sample.fps, 23, "ultrafast")
    log.info("wrote %s", sheet if movie is None else f"{sheet} and {movie}")
    return sheet, movie
