"""What the training data was made with: its geometry and its extractors, read from the data.

A preprocessing output records its resolved config (``ROOT/config.yaml``, read with its format
version checked by :func:`preprocess.config.read_output_config`), the identity of each
extractor it loaded (``ROOT/backends.json``: name, weights path and sha256, preset) and, in
every clip's metadata, the same identities. :func:`read_provenance` gathers them into a
:class:`Provenance`: the ``geometry`` the guiders are trained with and the
:class:`model.config.PreprocessingRecord` the trainer writes into every exported model folder
(``train.stages.load_stage_model``), so that ``python -m model.animate`` and ``python -m
train.evaluate`` use the same extractors (docs/model.md). :func:`check_clip_extractors`
compares a few clips' own identities with the output's: an output resumed with
``--allow-config-change`` can mix extractors, which the trainer then says.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from model.config import PreprocessingRecord
from model.extractors import identity_differences
from preprocess.config import read_output_config
from preprocess.geometry.config import GeometryConfig
from preprocess.runner import BACKENDS_FILE
from shards.reader import iter_samples
from shards.schema import check_format_version
from shards.storage import canonical, read_text, uri_join

log = logging.getLogger(__name__)


@dataclass
class Provenance:
    """The geometry and the extractors of a preprocessing output."""

    geometry: GeometryConfig
    record: PreprocessingRecord


def read_backends(root: str) -> dict[str, dict[str, Any]]:
    """``ROOT/backends.json`` (format version checked); empty, with a warning, when the
    output has none."""
    path = uri_join(root, BACKENDS_FILE)
    text = read_text(path)
    if text is None:
        log.warning("%s not found: the model will record the extractor settings only", path)
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of extractor kinds")
    return {k: dict(v) for k, v in check_format_version(data, path).items()}


def read_provenance(root: str) -> Provenance:
    """The geometry and the extractor record of the preprocessing output ``root``."""
    try:
        cfg = read_output_config(root)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}: data.root must be a preprocessing output") from None
    record = PreprocessingRecord(
        data=canonical(root),
        pose=cfg.pose,
        flow=cfg.flow,
        depth=cfg.depth,
        backends=read_backends(root),
    )
    return Provenance(cfg.geometry, record)


def check_clip_extractors(root: str, keys: list[str], record: PreprocessingRecord) -> int:
    """Warn for every clip of ``keys`` whose own ``backends`` metadata differs from the
    output's ``backends.json``; returns how many differ (only the ``json`` is read)."""
    if not record.backends or not keys:
        return 0
    differing = 0
    for sample in iter_samples(root, fields=[], keys=keys):
        clip = sample.meta.get("backends") or {}
        labels = (BACKENDS_FILE, "this clip")
        diffs = [
            d
            for kind in sorted(set(clip) | set(record.backends))
            for d in identity_differences(
                record.backends.get(kind, {}), clip.get(kind, {}), kind, labels
            )
        ]
        if diffs:
            differing += 1
            log.warning(
                "clip %s was made by other extractors than %s says (%s): the output mixes "
                "extractors (resumed with --allow-config-change?); the model records the "
                "output's",
                sample.key,
                BACKENDS_FILE,
                "; ".join(diffs),
            )
    return differing
