from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.discover import canonical_source, discover


def test_directory_list_glob_and_uris(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.mp4").write_bytes(b"x")
    (tmp_path / "a" / "one.pose.npz").write_bytes(b"x")  # companion, not an input
    (tmp_path / "a" / ".hidden.mp4").write_bytes(b"x")
    (tmp_path / "a" / ".staging").mkdir()
    (tmp_path / "a" / ".staging" / "x.tar").write_bytes(b"x")
    (tmp_path / "two.avi").write_bytes(b"x")
    (tmp_path / "notes.md").write_text("not a video")
    listing = tmp_path / "inputs.txt"
    listing.write_text("# comment\ntwo.avi\ns3://bucket/v.mp4\n\n")

    from_dir = discover([str(tmp_path / "a")])
    assert from_dir == [str((tmp_path / "a" / "one.mp4").resolve())]
    assert discover([str(listing)]) == sorted([str(tmp_path / "two.avi"), "s3://bucket/v.mp4"])
    assert discover([str(tmp_path / "*.avi")]) == [str(tmp_path / "two.avi")]
    both = discover([str(tmp_path / "a"), str(tmp_path / "a" / "one.mp4")])
    assert len(both) == 1  # de-duplicated by canonical source


def test_missing_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a file, directory or matching glob"):
        discover([str(tmp_path / "nope" / "*.mp4")])


def test_canonical_source_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert canonical_source("v.mp4") == str(tmp_path / "v.mp4")
    assert canonical_source("s3://b/k.mp4") == "s3://b/k.mp4"
