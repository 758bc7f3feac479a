"""Identity of the weights behind a backend, recorded in every clip's metadata."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.lru_cache(maxsize=64)
def sha256_file(path: str) -> str:
    """sha256 of a weights file (cached per path: backends hash once per process)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backend_identity(name: str, model: str = "", **extra: object) -> dict[str, object]:
    """``{"name", "model", "sha256", ...}`` for a backend; sha256 is None without a file."""
    sha = sha256_file(str(Path(model).resolve())) if model and Path(model).is_file() else None
    return {
        "name": name,
        "model": str(Path(model).resolve()) if model else "",
        "sha256": sha,
        **extra,
    }
