"""Keys files: a curated list of clip keys, and the clips of a table that it names.

A keys file is written by ``python -m shards select --to FILE.txt`` and by the dataset
browser's export (``python -m shards browse``): one key per line. The JSON that ``select``
writes for other names (``{"keys": [...], ...}``) is read as well. Blank lines and lines
starting with ``#`` are ignored. It is read back by ``python -m shards select --keys FILE``
and by training's ``data.keys`` (``train.loader.select_clips``), so a selection made by
looking at the data is exactly what is trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from shards.schema import KEY_RE
from shards.storage import PathLike, read_text

__all__ = ["MissingKeysError", "format_keys", "keys_in_table", "read_keys"]


class MissingKeysError(ValueError):
    """Keys of a keys file that are not clips of the output."""


def read_keys(path: PathLike) -> list[str]:
    """The keys of a keys file (local path or URI), in file order, duplicates dropped.

    Raises FileNotFoundError when there is no such file, ValueError naming the line of a
    key that is not a valid clip key (``[A-Za-z0-9_-]{1,200}``) or of JSON without ``keys``.
    """
    text = read_text(path)
    if text is None:
        raise FileNotFoundError(f"keys file {path}: no such file")
    if text.lstrip().startswith("{"):
        try:
            keys = json.loads(text)["keys"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"keys file {path}: JSON without a 'keys' list ({exc}); write one key per "
                "line, or the JSON of 'python -m shards select'"
            ) from None
        lines = [(i, str(k)) for i, k in enumerate(keys, 1)]
    else:
        lines = [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1)]
        lines = [(i, s) for i, s in lines if s and not s.startswith("#")]
    for number, key in lines:
        if not KEY_RE.fullmatch(key):
            raise ValueError(
                f"keys file {path}, entry {number}: {key[:80]!r} is not a clip key "
                "(letters, digits, '_' and '-'; one key per line)"
            )
    return list(dict.fromkeys(k for _, k in lines))


def format_keys(keys: Iterable[str]) -> str:
    """The text of a keys file: one key per line."""
    return "".join(f"{k}\n" for k in keys)


def keys_in_table(table: pa.Table, keys: list[str], source: PathLike = "keys") -> pa.Table:
    """The rows of ``table`` (with a ``key`` column) whose key is in ``keys``, in table order.

    Raises :class:`MissingKeysError` naming the first missing keys when some are not in the table: a keys file
    made for another output (or an older one) is an error, not an empty selection.
    """
    present = set(table["key"].to_pylist())
    missing = [k for k in keys if k not in present]
    if missing:
        raise MissingKeysError(
            f"{len(missing)} of the {len(keys)} keys of {source} are not clips of this output, "
            f"e.g. {', '.join(missing[:3])}; was the file made for another output?"
        )
    return table.filter(pc.is_in(table["key"], pa.array(keys, pa.string())))
