"""The one logging setup (logs.py): one format, rank-aware levels, re-callable."""

from __future__ import annotations

import io
import logging

import pytest

from shards.logs import setup_logging


def emit() -> None:
    logging.getLogger("train.trainer").info("ours info")
    logging.getLogger("train.trainer").warning("ours warning")
    logging.getLogger("urllib3.pool").info("library info")
    logging.getLogger("urllib3.pool").warning("library warning")


def test_single_process_format_and_level() -> None:
    out = io.StringIO()
    setup_logging("debug", stream=out)
    logging.getLogger("shards.reader").debug("a %s", "detail")
    emit()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(" DEBUG shards.reader: a detail")
    assert len(lines) == 5  # everything at DEBUG, libraries included


@pytest.mark.parametrize(("rank", "expected"), [(0, ["ours info"]), (3, [])])
def test_ranks(rank: int, expected: list[str]) -> None:
    out = io.StringIO()
    setup_logging("INFO", rank=rank, stream=out)
    emit()
    text = out.getvalue()
    assert all(f"[rank {rank}] " in line for line in text.splitlines())
    got = [m for m in ("ours info", "ours warning", "library info", "library warning") if m in text]
    assert got == [*expected, "ours warning", "library warning"]


def test_calling_again_replaces_its_handler(capsys: pytest.CaptureFixture[str]) -> None:
    before = list(logging.getLogger().handlers)  # pytest's own stay
    first = io.StringIO()
    setup_logging(stream=first)
    setup_logging("WARNING")  # to the current stderr
    emit()
    assert first.getvalue() == ""
    err = capsys.readouterr().err
    assert "ours warning" in err and "ours info" not in err
    added = [h for h in logging.getLogger().handlers if h not in before]
    assert len(added) == 1 and all(h in logging.getLogger().handlers for h in before)
    with pytest.raises(ValueError, match="unknown logging level"):
        setup_logging("LOUD")
