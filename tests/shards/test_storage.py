"""The storage layer (storage.py): local paths and s3:// alike, atomic local writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shards import storage


def test_local_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.txt"
    assert storage.read_text(str(path)) is None
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(path)
    storage.write_text(path, "héllo")  # parent folders are created
    assert storage.read_text(path) == "héllo" and path.read_text() == "héllo"
    storage.write_bytes(f"file://{path}", b"\x00\x01")
    assert storage.read_bytes(path) == b"\x00\x01"
    assert storage.exists(path) and not storage.is_dir(path) and storage.is_dir(tmp_path / "a")
    assert not storage.exists(tmp_path / "nothing")
    assert [p.name for p in tmp_path.rglob("*")] == ["a", "b.txt"]  # no tmp file left
    storage.delete(path)
    storage.delete(path)  # nothing there: nothing to do
    assert not path.exists()


def test_listings_hide_hidden_names(tmp_path: Path) -> None:
    for name in ("x/2.tar", "x/1.tar", "x/.1.tar.tmp", "x/sub/3.tar", "x/.hidden/4.tar"):
        storage.write_bytes(tmp_path / name, b"")
    entries = storage.list_dir(tmp_path / "x")
    assert [(e.name, e.is_file) for e in entries] == [
        ("1.tar", True),
        ("2.tar", True),
        ("sub", False),
    ]
    assert entries[0].path == str(tmp_path / "x" / "1.tar")
    assert ".1.tar.tmp" in [e.name for e in storage.list_dir(tmp_path / "x", hidden=True)]
    assert storage.list_dir(tmp_path / "missing") == []
    files = storage.list_files(tmp_path / "x")
    assert files == [str(tmp_path / "x" / n) for n in ("1.tar", "2.tar", "sub/3.tar")]
    assert storage.list_files(tmp_path / "x" / "1.tar") is None
    with pytest.raises(FileNotFoundError, match="no such object"):
        storage.list_files(tmp_path / "missing")


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    final = tmp_path / "out" / "video.mp4"
    with storage.atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".") and tmp.suffix == ".mp4"
        assert storage.is_tmp_name(tmp.name)
        tmp.write_bytes(b"whole")
        assert not final.exists()  # nothing visible before the block ends
    assert final.read_bytes() == b"whole"

    def fail_half_way() -> None:
        with storage.atomic_path(final) as tmp:
            tmp.write_bytes(b"part")
            raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        fail_half_way()
    assert final.read_bytes() == b"whole"  # the old file is untouched
    assert sorted(p.name for p in final.parent.iterdir()) == ["video.mp4"]  # no tmp left
    with pytest.raises(ValueError, match="local files"), storage.atomic_path("s3://b/k"):
        pass


def test_atomic_path_writes_folders_too(tmp_path: Path) -> None:
    final = tmp_path / "model"
    with storage.atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "config.yaml").write_text("a: 1\n")
    assert (final / "config.yaml").read_text() == "a: 1\n"

    def fail_half_way() -> None:
        with storage.atomic_path(tmp_path / "other") as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_bytes(b"part")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fail_half_way()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_names() -> None:
    assert storage.is_remote("s3://b/k") and not storage.is_remote("file:///x")
    assert not storage.is_remote("/data/x")
    assert storage.uri_join("s3://b/out/", "shards", "a.tar") == "s3://b/out/shards/a.tar"
    assert storage.canonical("s3://b/out/") == "s3://b/out"
    assert storage.canonical("rel") == str(Path("rel").resolve())
    assert storage.is_tmp_name(".shard-000001.tar.tmp") and not storage.is_tmp_name("a.tmp")
    with pytest.raises(ValueError, match="not a file system URI"):
        storage.filesystem("nope://x/y")


def test_s3_objects(s3_server: str, tmp_path: Path) -> None:
    root = f"{s3_server}/storage"
    assert storage.read_text(f"{root}/a.txt") is None and not storage.exists(root)
    storage.write_text(f"{root}/a.txt", "one")
    storage.write_bytes(f"{root}/.hidden", b"")
    (tmp_path / "big.bin").write_bytes(b"x" * 100_000)
    storage.upload(tmp_path / "big.bin", f"{root}/sub/big.bin")
    assert storage.read_text(f"{root}/a.txt") == "one"
    assert storage.read_bytes(f"{root}/sub/big.bin") == b"x" * 100_000
    assert storage.is_dir(root) and storage.exists(f"{root}/a.txt")
    entries = storage.list_dir(root)
    assert [(e.name, e.path, e.is_file) for e in entries] == [
        ("a.txt", f"{root}/a.txt", True),
        ("sub", f"{root}/sub", False),
    ]
    assert storage.list_files(root) == [f"{root}/a.txt", f"{root}/sub/big.bin"]
    with storage.open_input(f"{root}/a.txt") as f:
        assert f.read() == b"one"
    storage.delete(f"{root}/a.txt")
    assert not storage.exists(f"{root}/a.txt")
    storage.make_dirs(root)  # object stores need no folders: nothing happens
