"""The training data's extractors at inference: defaults from a model folder's record, and
what a run changes.

A trained model folder records which pose, flow and depth extractors made its training data
and with which settings (:class:`model.config.PreprocessingRecord`, written by the trainer).
Its guiders learned on *those* pose maps and depth orders (DWPose whole-body maps are not
MoveNet body-only maps; Depth Anything ranks are not the feet heuristic), so inference must
make its inputs the same way:

- :func:`recorded_sections` gives the record's ``pose`` and ``depth`` sections as a run's
  defaults (``python -m model.animate`` merges its flags and overrides over them), with the
  keys that only say how a run executes (:data:`RUN_KEYS`: device, batch size, threads)
  left at the run's own defaults;
- :func:`setting_differences` and :func:`identity_differences` name what a run uses that is
  not what the data was made with (settings; backend name, weights sha256, preset), for the
  warnings of ``model.animate`` and ``train.evaluate``;
- :func:`describe` names the recorded extractor of a kind in messages (e.g. the error when
  its weights are missing here).

Pure: no extractor is loaded here (only ``model/animate.py`` runs backends).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, TypeVar

from model.config import PreprocessingRecord
from preprocess.config import DepthConfig, PoseConfig

RUN_KEYS = frozenset({"device", "batch_size", "threads", "sidecar_suffix"})
"""Config keys that change how an extractor runs or where it looks, never its output."""
PATH_KEYS = frozenset({"model", "detector", "weights"})
"""Weights locations: machines differ, so they are compared by the weights' sha256."""

Section = TypeVar("Section", PoseConfig, DepthConfig)


def recorded_sections(record: PreprocessingRecord) -> tuple[PoseConfig, DepthConfig] | None:
    """The record's ``pose`` and ``depth`` sections as a run's defaults (its :data:`RUN_KEYS`
    at the run's defaults), or None when the folder records none."""
    if record.pose is None or record.depth is None:
        return None
    return _for_run(record.pose, PoseConfig()), _for_run(record.depth, DepthConfig())


def _for_run(recorded: Section, default: Section) -> Section:
    run = {f.name: getattr(default, f.name) for f in fields(default) if f.name in RUN_KEYS}
    return replace(recorded, **run)


def setting_differences(recorded: Any, used: Any, kind: str) -> list[str]:
    """``kind.key: recorded -> used`` for every setting of two config sections that decides
    what the extractor outputs (not :data:`RUN_KEYS`, not weights paths)."""
    out = []
    for f in fields(recorded):
        if f.name in RUN_KEYS | PATH_KEYS:
            continue
        a, b = getattr(recorded, f.name), getattr(used, f.name)
        if a != b:
            out.append(f"{kind}.{f.name}: {a!r} (training data) -> {b!r} (this run)")
    return out


def identity_differences(
    recorded: dict[str, Any],
    used: dict[str, Any],
    kind: str,
    labels: tuple[str, str] = ("training data", "this run"),
) -> list[str]:
    """What differs between two backend identities (``Backend.identity()``, as in
    ``backends.json``): name, weights sha256, preset, ...; the weights path is ignored (the
    same weights may lie elsewhere on another machine). ``labels`` name the two sides."""
    keys = sorted((set(recorded) | set(used)) - {"model"})
    return [
        f"{kind} {k}: {recorded.get(k)!r} ({labels[0]}) -> {used.get(k)!r} ({labels[1]})"
        for k in keys
        if recorded.get(k) != used.get(k)
    ]


def describe(record: PreprocessingRecord, kind: str) -> str:
    """``dwpose (weights /path/x.onnx, sha256 0621dad6…)``: the recorded extractor of ``kind``."""
    ident = record.backends.get(kind, {})
    section = getattr(record, kind, None)
    name = ident.get("name") or getattr(section, "backend", "?")
    details = [f"weights {ident['model']}" if ident.get("model") else "no weights"]
    if ident.get("sha256"):
        details.append(f"sha256 {str(ident['sha256'])[:12]}…")
    return f"{name} ({', '.join(details)})"


def same_extractors(a: PreprocessingRecord, b: PreprocessingRecord) -> bool:
    """True when two records name the same extractors with the same settings (weights by
    sha256, run-only keys ignored)."""
    for kind in ("pose", "flow", "depth"):
        if identity_differences(a.backends.get(kind, {}), b.backends.get(kind, {}), kind):
            return False
        x, y = getattr(a, kind), getattr(b, kind)
        if (x is None) != (y is None) or (x is not None and setting_differences(x, y, kind)):
            return False
    return True
