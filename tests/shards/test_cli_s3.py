"""``python -m shards stats|validate|select`` on an ``s3://`` output (moto's S3 server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from shards.__main__ import main
from shards.reader import read_clips
from shards.storage import filesystem, read_bytes
from tests.shards.test_cli import shorten_a_mask

WHERE = "bg_flow_mean < 2 and characters_max >= 2"


def upload(local: Path, uri: str) -> str:
    fs, path = filesystem(uri)
    pafs.copy_files(str(local), path, destination_filesystem=fs)
    return uri


@pytest.fixture(scope="module")
def remote(output: Path, s3_server: str) -> str:
    return upload(output, f"{s3_server}/outputs/good")


def test_stats(remote: str, output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", remote, "--json", "--where", WHERE]) == 0
    got = json.loads(capsys.readouterr().out)
    assert main(["stats", str(output), "--json", "--where", WHERE]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert got["root"] == remote and got["totals"]["clips"] == 3
    assert {**got, "root": None} == {**expected, "root": None}
    assert main(["stats", remote, "--plots", f"{remote}-plots"]) == 0
    assert "videos          5   ok 4, failed 1, skipped 0" in capsys.readouterr().out
    assert read_bytes(f"{remote}-plots/characters.png")[:4] == b"\x89PNG"


def test_validate(
    remote: str, output: Path, tmp_path: Path, s3_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", remote]) == 0
    out = capsys.readouterr().out
    assert f"validated {remote}: 3 shards, 11 samples decoded, 11 clip rows" in out
    assert "note: leftover checks (tmp files, staging files) are local-only" in out
    assert out.strip().endswith("OK")
    bad = Path(shutil.copytree(output, tmp_path / "bad"))
    shorten_a_mask(bad)
    assert main(["validate", upload(bad, f"{s3_server}/outputs/bad")]) == 1
    out = capsys.readouterr().out
    assert "mask has 7 frames, frames has 8" in out and out.strip().endswith("FAILED")


def test_select(remote: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sel" / "s.json"
    assert main(["select", remote, "--where", WHERE, "--to", str(target)]) == 0
    assert "selected 3 clips in 3 shards" in capsys.readouterr().out
    sel = json.loads(target.read_text())
    expected = read_clips(remote, where=WHERE)
    assert sel["root"] == remote and sel["keys"] == expected["key"].to_pylist()
    assert sel["shards"] == [
        f"{remote}/shards/{n}" for n in dict.fromkeys(expected["shard"].to_pylist())
    ]
    assert all(read_bytes(s)[257:262] == b"ustar" for s in sel["shards"])  # real tars
    assert main(["select", remote, "--where", WHERE, "--to", f"{remote}-keys.txt"]) == 0
    assert read_bytes(f"{remote}-keys.txt").decode().splitlines() == sel["keys"]


def test_not_an_output(s3_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", f"{s3_server}/nothing"]) == 2
    assert "is not a preprocessing output" in capsys.readouterr().err
    assert main(["select", "nope://x/y", "--where", WHERE, "--to", "k.txt"]) == 2
    assert "not a file system URI" in capsys.readouterr().err
    assert main(["validate", f"{s3_server}/nothing"]) == 1
    assert "not a preprocessing output" in capsys.readouterr().out
