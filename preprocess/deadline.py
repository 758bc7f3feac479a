"""The per-video timeout: a stage call that runs past its video's deadline is cut off.

Both runners call every stage through :func:`within_deadline`. Without a deadline the call
runs as is. With one, it runs in a daemon thread and the caller waits at most until the
deadline; past it, the caller gets ``StageError(stage, "timeout: ...")`` and the video is
recorded as failed at that stage. Python cannot kill a thread, so a call that really hangs
keeps its thread (and whatever it holds) until the process ends; the worker goes on with the
next video. A call stuck in C code that holds the GIL cannot be cut off this way at all;
Ray's own retries and the job's restart are the remedy then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from preprocess.clip import StageError

T = TypeVar("T")


def video_deadline(timeout_s: float, start: float | None = None) -> float | None:
    """Epoch seconds by which a video started at ``start`` (now) must be done; None: no limit."""
    if timeout_s <= 0:
        return None
    return (time.time() if start is None else start) + timeout_s


def within_deadline(
    name: str, deadline: float | None, fn: Callable[..., T], *args: Any, timeout_s: float = 0.0
) -> T:
    """``fn(*args)``, or StageError(name, "timeout ...") once ``deadline`` (epoch s) passes.

    Epoch time, not a monotonic clock: the deadline travels with the video between Ray
    workers, possibly on other nodes (their clocks are assumed in sync to well under a second).
    """
    if deadline is None:
        return fn(*args)
    remaining = deadline - time.time()
    if remaining <= 0:
        raise StageError(name, _message(timeout_s, "before this stage started"))
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"stage-{name}", daemon=True)
    thread.start()
    thread.join(remaining)
    if thread.is_alive():
        raise StageError(name, _message(timeout_s, "while this stage was running"))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _message(timeout_s: float, when: str) -> str:
    limit = f"{timeout_s:g} s " if timeout_s > 0 else ""
    return f"timeout: the video's {limit}limit (run.video_timeout_s) ran out {when}"
