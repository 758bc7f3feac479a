"""The one logging setup, called once by every entry point (``main``) before it does any work.

    from shards.logs import setup_logging

    setup_logging("INFO")                         # a single-process tool: logs to stderr
    setup_logging("INFO", rank=rank, stream=sys.stdout)   # one process of a distributed job

One format everywhere: ``time LEVEL logger: message``; with ``rank`` the rank is in it
(``time [rank 3] LEVEL logger: message``), our packages (:data:`OUR_PACKAGES`) log at
``level`` on rank 0 and at WARNING on the other ranks, and libraries log at WARNING. Without
``rank`` everything logs at ``level``. Modules only ever call ``logging.getLogger(__name__)``.

Calling it again replaces the handler it installed (and only that one: handlers that others
installed, e.g. pytest's capture, stay). Without ``stream`` the handler writes to whatever
``sys.stderr`` is at the time of each record.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

OUR_PACKAGES = ("preprocess", "shards", "model", "train")
"""Top-level packages of this project (their loggers are ``preprocess.pipeline``, ...)."""

FORMAT = "%(asctime)s {rank}%(levelname)s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):
    """A stream handler on the current ``sys.stderr`` (which tests and tools may swap)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_installed: logging.Handler | None = None


def setup_logging(
    level: str | int = "INFO", *, rank: int | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Configure the root logger: one handler in the project's format; see the module doc.

    ``level`` is a name (``"debug"``, ``"INFO"``) or a ``logging`` number. Returns the
    handler installed. A bad level name raises ValueError.
    """
    global _installed
    number = _level(level)
    handler: logging.Handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    tag = "" if rank is None else f"[rank {rank}] "
    handler.setFormatter(logging.Formatter(FORMAT.format(rank=tag)))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    if rank is None:
        root.setLevel(number)
        ours = logging.NOTSET  # inherit the root's level
    else:
        root.setLevel(logging.WARNING)
        ours = number if rank == 0 else max(number, logging.WARNING)
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(ours)
    return handler


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown logging level {level!r} (DEBUG, INFO, WARNING, ERROR)")
    return number
