"""Typed job configs: dataclass defaults < YAML preset < dotted command-line overrides.

Every job (preprocessing, training, model folders) declares one nested dataclass. This module
turns a YAML preset plus ``key.sub=value`` overrides into an instance of it, and writes the
resolved config back as YAML. It lives in ``shards/`` because the resolved config is part of
the on-disk contract: it is stored next to every output, inside every clip's metadata and
inside every checkpoint, and both ``preprocess/`` and ``train/`` read it back.

OmegaConf does the merging and type checking (unknown keys and wrong types are errors); YAML
is read with a safe loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A preset or an override does not fit the job's config."""


def load_config(
    cls: type[T],
    preset: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> T:
    """Build ``cls`` from its defaults, then a YAML preset, then ``a.b=value`` overrides."""
    try:
        merged = OmegaConf.structured(cls)
        if preset is not None:
            text = Path(preset).read_text()
            data = yaml.safe_load(text) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{preset}: expected a mapping at the top level")
            merged = OmegaConf.merge(merged, OmegaConf.create(data))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key.sub=value, got {bad}")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, cls)
    return obj


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config from its stored (resolved) form, e.g. a checkpoint's ``config.yaml``."""
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, cls)
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any, path: str | Path | None = None) -> str:
    """The resolved config as YAML; also written to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def _short(exc: OmegaConfBaseException) -> str:
    # OmegaConf messages carry a multi-line "full_key/object_type" trailer; keep the first line
    # and the key it names.
    first = str(exc).splitlines()[0]
    key = getattr(exc, "full_key", None)
    return f"{key}: {first}" if key else first
