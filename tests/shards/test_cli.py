"""``python -m shards stats|validate|select`` end to end through ``main([...])``."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shards.__main__ import main
from shards.codec import encode_mask
from shards.reader import read_clips

Members = list[tuple[str, bytes]]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


# -- stats ----------------------------------------------------------------------------------


def test_stats_text(output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["stats", str(output)], capsys)
    assert code == 0
    assert "videos          5   ok 4, failed 1, skipped 0" in out
    assert "12.00%" in out and "66.25%" in out
    assert "1  failed   pose       ValueError" in out


def test_stats_json_with_where(output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["stats", str(output), "--json", "--where", "n_tracks >= 2"], capsys)
    assert code == 0
    summary = json.loads(out)
    expected = read_clips(output, where="n_tracks >= 2")
    assert summary["where"] == "n_tracks >= 2"
    assert summary["totals"]["clips"] == expected.num_rows == 6
    assert summary["totals"]["videos"] == len(set(expected["video_id"].to_pylist())) == 2
    assert summary["failures"] == []
    assert summary["characters"]["clips"]["counts"]["1"] == 0


def test_stats_plots(output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["stats", str(output), "--plots", str(tmp_path / "plots")], capsys)
    assert code == 0
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["bg_flow_mean.png", "characters.png", "occlusion_rate.png"]
    assert all((tmp_path / "plots" / n).read_bytes()[:4] == b"\x89PNG" for n in pngs)


def test_usage_errors_exit_2(
    output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", str(output), "--where", "nope > 1"]) == 2
    assert "columns of the clips table" in capsys.readouterr().err
    assert main(["stats", str(tmp_path)]) == 2
    assert "not a preprocessing output" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["select", str(output)])  # --where and --to are required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "validate" in capsys.readouterr().out


def undocumented(help_text: str) -> list[str]:
    """Entries of an argparse help's argument sections that have no description."""
    lines, bad, listing = help_text.splitlines(), [], False
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            listing = line in ("options:", "positional arguments:")
        elif listing and re.match(r"  \S", line):
            name, *text = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            wrapped = i + 1 < len(lines) and lines[i + 1].startswith(" " * 6)
            if not text and not wrapped:
                bad.append(name)
    return bad


@pytest.mark.parametrize("command", [[], ["stats"], ["validate"], ["select"]])
def test_help_explains_every_option(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert undocumented(text) == [], text
    assert "s3://" in text  # every command takes remote outputs
    assert undocumented("options:\n  --bare\n  --ok        does things\n") == ["--bare"]


# -- select ---------------------------------------------------------------------------------


def test_select_json_and_txt(
    output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = "bg_flow_mean < 2 and characters_max >= 2"
    code, out = run(
        ["select", str(output), "--where", where, "--to", str(tmp_path / "s.json")], capsys
    )
    assert code == 0 and "selected 3 clips in 3 shards" in out
    sel = json.loads((tmp_path / "s.json").read_text())
    expected = read_clips(output, where=where)
    assert sel["keys"] == expected["key"].to_pylist() and sel["n_clips"] == 3
    assert sel["where"] == where and sel["root"] == str(output.resolve())
    assert [Path(s).name for s in sel["shards"]] == sorted(set(expected["shard"].to_pylist()))
    for shard in sel["shards"]:
        with tarfile.open(shard) as tar:
            keys_in_tar = {m.name.split(".")[0] for m in tar.getmembers()}
        assert keys_in_tar & set(sel["keys"])
    assert main(["select", str(output), "--where", where, "--to", str(tmp_path / "k.txt")]) == 0
    assert (tmp_path / "k.txt").read_text().splitlines() == sel["keys"]


# -- validate -------------------------------------------------------------------------------


def test_validate_passes_on_a_good_output(output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["validate", str(output)], capsys)
    assert code == 0, out
    assert "3 shards, 11 samples decoded, 11 clip rows, videos: 1 failed, 4 ok" in out
    assert out.strip().endswith("OK")


def edit_tar(path: Path, edit: Callable[[Members], Members]) -> None:
    with tarfile.open(path) as tar:
        files = [(m.name, tar.extractfile(m)) for m in tar.getmembers()]
        members = [(name, f.read()) for name, f in files if f is not None]
    with tarfile.open(path, "w") as tar:
        for name, data in edit(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def edit_rows(path: Path, column: str, fn: Callable[[object], object]) -> None:
    table = pq.read_table(path)
    values = table[column].to_pylist()
    values[0] = fn(values[0])
    i = table.schema.get_field_index(column)
    col = pc.cast(values, table.schema.field(column).type)
    pq.write_table(table.set_column(i, table.schema.field(column), [col]), path)


SHARD0 = "shards/shard-000000.tar"


def first_key(members: Members) -> str:
    return members[0][0].split(".")[0]


def delete_a_sample(root: Path) -> None:
    edit_tar(root / SHARD0, lambda m: [x for x in m if not x[0].startswith(first_key(m))])


def add_a_sample_without_row(root: Path) -> None:
    def add(m: Members) -> Members:
        key = first_key(m)
        return m + [(n.replace(key, key + "9"), d) for n, d in m if n.startswith(key)]

    edit_tar(root / SHARD0, add)


def corrupt_a_field(root: Path) -> None:
    def corrupt(m: Members) -> Members:
        return [(n, b"\x93NUMPY garbage" if n.endswith(".pose.npy") else d) for n, d in m]

    edit_tar(root / SHARD0, corrupt)


def shorten_a_mask(root: Path) -> None:
    short = encode_mask(np.zeros((7, 12, 16), bool))
    edit_tar(root / SHARD0, lambda m: [(n, short if n.endswith(".mask.npz") else d) for n, d in m])


def set_format_version(root: Path, version: int) -> None:
    def edit(m: Members) -> Members:
        def bump(data: bytes) -> bytes:
            return json.dumps({**json.loads(data), "format_version": version}).encode()

        return [(n, bump(d) if n.endswith(".json") else d) for n, d in m]

    edit_tar(root / SHARD0, edit)


TAMPERINGS: dict[str, tuple[Callable[[Path], object], str]] = {
    "deleted sample": (delete_a_sample, r"row \w+ has no sample in the tar"),
    "sample without row": (add_a_sample_without_row, "has no row in its Parquet file"),
    "corrupted field": (corrupt_a_field, "does not decode"),
    "mask with other frame count": (shorten_a_mask, "mask has 7 frames, frames has 8"),
    "unknown member": (
        lambda r: edit_tar(r / SHARD0, lambda m: [*m, ("notes.txt", b"hello")]),
        "unexpected member 'notes.txt'",
    ),
    "extra tar": (
        lambda r: shutil.copy(r / SHARD0, r / "shards" / "shard-000042.tar"),
        "shard-000042.tar: no clips Parquet file",
    ),
    "extra parquet": (
        lambda r: shutil.copy(
            r / "stats/clips/shard-000000.parquet", r / "stats/clips/x-000001.parquet"
        ),
        "no shard tar",
    ),
    "mismatched row": (
        lambda r: edit_rows(r / "stats/clips/shard-000001.parquet", "width", lambda v: 65),
        "width is 64, its row says 65",
    ),
    "video count": (
        lambda r: edit_rows(r / "stats/videos/shard-000000.parquet", "n_clips", lambda v: 4),
        "says 4 clips / 24 frames, the clips table has 3 / 24",
    ),
    "schema change": (
        lambda r: pq.write_table(
            pq.read_table(r / "stats/clips/shard-000001.parquet").drop_columns(["fps"]),
            r / "stats/clips/shard-000001.parquet",
        ),
        "shard-000001.parquet: schema differs from the contract",
    ),
    "older format": (
        lambda r: set_format_version(r, 0),
        r"shard-000000.tar: sample \w+: format version 0 is older .* re-run preprocessing",
    ),
    "newer format": (
        lambda r: set_format_version(r, 2),
        r"format version 2 is newer than this code reads; .*: upgrade mcanim",
    ),
    "tmp file": (
        lambda r: (r / "shards" / ".shard-000003.tar.tmp").write_bytes(b"x"),
        "tmp file left by an interrupted writer",
    ),
    "atomic-write tmp file": (
        lambda r: (r / ".config.yaml.1a2b3c4d.tmp.yaml").write_bytes(b"x"),
        r"\.config\.yaml\.1a2b3c4d\.tmp\.yaml: tmp file left by an interrupted writer",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_validate_fails_on_a_tampered_output(
    copy: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper, message = TAMPERINGS[name]
    tamper(copy)
    code, out = run(["validate", str(copy)], capsys)
    assert code == 1, out
    assert out.strip().endswith("FAILED")
    assert any(re.search(message, line) for line in out.splitlines()), out
