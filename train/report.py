"""Evaluation reports of ``python -m train.evaluate``: ``report.json`` (every metric and
setting), ``report.md`` and ``report.html`` (one table row per ``--ablate`` entry: the model
as it is, or with one guider's input zeroed at inference), and one
contact sheet per clip and variant (``sheets/VARIANT/KEY.png``: rows of frames, columns
reference | pose | generated | real). Every file is written atomically
(:func:`shards.storage.atomic_path` / ``write_text``): a reader never sees half a report."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shards.storage import atomic_path, write_text

COLUMNS = (
    ("l1", "L1 ↓", "{:.4f}"),
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.4f}"),
    ("lpips", "LPIPS ↓", "{:.4f}"),
    ("fid", "FID ↓", "{:.2f}"),
    ("fid_vid", "FID-VID ↓", "{:.2f}"),
    ("fvd", "FVD ↓", "{:.2f}"),
)
FEATURE_KEYS = ("lpips", "fid", "fid_vid", "fvd")
VARIANT_TITLE = "input zeroed at inference"
"""Title of the first column: ``none``, or the guider whose input the row zeroes."""


def contact_sheet(
    reference: np.ndarray, pose: np.ndarray, generated: np.ndarray, real: np.ndarray, rows: int = 4
) -> np.ndarray:
    """(rows*H, 4W, 3) uint8: ``rows`` frames spread over the clip, each row
    reference | pose | generated | real."""
    picks = np.unique(
        np.linspace(0, len(generated) - 1, min(rows, len(generated))).round().astype(int)
    )
    return np.concatenate(
        [np.concatenate([reference, pose[i], generated[i], real[i]], axis=1) for i in picks]
    )


def write_sheet(path: Path, sheet: np.ndarray) -> None:
    """Write a contact sheet (H, W, 3) uint8 RGB as a PNG (parent folders created)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")


def _cell(metrics: dict[str, Any], key: str, fmt: str, stand_in: bool) -> str:
    if key not in metrics:
        return "skipped"
    text = fmt.format(metrics[key])
    return f"{text} (stand-in)" if stand_in and key in FEATURE_KEYS else text


def rows(report: dict[str, Any]) -> list[list[str]]:
    stand_in = bool(report["settings"]["stand_in_features"])
    return [
        [variant, *(_cell(v["metrics"], k, f, stand_in) for k, _, f in COLUMNS)]
        for variant, v in report["variants"].items()
    ]


def _notes(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    notes = [
        f"Unified standard: centre square crop, resize to {s['standard']['size']}x"
        f"{s['standard']['size']}, every frame; video metrics on consecutive "
        f"{s['standard']['clip_len']}-frame segments.",
        f"Checkpoint {s['checkpoint']} ({s['model_preset']}), data {s['data']}, "
        f"where {s['where']!r}, {len(report['clips'])} clip(s).",
    ]
    guiders = s.get("model_guiders")
    if guiders:
        notes.append(f"Model guiders: {', '.join(guiders)} (the guiders it was trained with).")
    if any(v != "none" for v in report["variants"]):
        notes.append(
            "Rows other than none zero that guider's input at inference on this same trained "
            "model; the paper's Table 4 variants are trained without the guider "
            "(stage.guiders), and are evaluated as models of their own."
        )
    if s["model_preset"] == "tiny":
        notes.append("TINY random-weight model: the numbers only show that every stage runs.")
    if s["stand_in_features"]:
        notes.append(
            "STAND-IN feature networks (random weights, same structure): LPIPS / FID / "
            "FID-VID / FVD marked (stand-in) are NOT metrics and cannot be compared with anything."
        )
    for variant, v in report["variants"].items():
        for name, reason in v["metrics"].get("skipped", {}).items():
            notes.append(f"{variant}: {name} skipped: {reason}")
    return notes


def markdown(report: dict[str, Any]) -> str:
    head = [VARIANT_TITLE, *(title for _, title, _ in COLUMNS)]
    lines = ["# Evaluation", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(report)]
    lines += ["", *(f"- {n}" for n in _notes(report)), ""]
    return "\n".join(lines)


def html_page(report: dict[str, Any], sheets: list[str]) -> str:
    titles = [VARIANT_TITLE, *(t for _, t, _ in COLUMNS)]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows(report)
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(report))
    images = "".join(
        f'<figure><img src="{html.escape(p)}" width="100%"><figcaption>{html.escape(p)} '
        "(reference | pose | generated | real)</figcaption></figure>"
        for p in sheets
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>mcanim evaluation</title>"
        f"<h1>Evaluation</h1><table border=1><tr>{head}</tr>{body}</table>"
        f"<ul>{notes}</ul>{images}\n"
    )


def write_report(out: Path, report: dict[str, Any], sheets: list[str]) -> None:
    """report.json, report.md and report.html in ``out`` (each written atomically)."""
    files = {
        "report.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        "report.md": markdown(report),
        "report.html": html_page(report, sheets),
    }
    for name, text in files.items():
        write_text(out / name, text)
