"""preprocess.weights: fetch over real HTTP from a loopback server, sha256 manifest, offline
report; hashing, the assets folder, safe state dicts and strict loading."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from preprocess import weights
from preprocess.weights import (
    ENTRIES,
    assets_dir,
    backend_identity,
    entry_path,
    main,
    read_manifest,
    sha256_file,
)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving tmp_path/www (laid out as HOST/PATH)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def publish(root: Path) -> dict[str, bytes]:
    """Put a distinct payload at the mirror path of every official file."""
    payloads = {}
    for entry in ENTRIES.values():
        for f in entry.files:
            url = f.source_url()
            data = f"stand-in for {url}".encode()
            target = root / url.split("://", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            payloads[f"{entry.folder}/{f.path}"] = data
    return payloads


def test_official_sources() -> None:
    urls = {f.source_url() for e in ENTRIES.values() for f in e.files}
    assert "https://huggingface.co/yzd-v/DWPose/resolve/main/yolox_l.onnx" in urls
    assert "https://huggingface.co/yzd-v/DWPose/resolve/main/dw-ll_ucoco_384.onnx" in urls
    assert (
        "https://download.openmmlab.com/mmflow/pwcnet/pwcnet_ft_4x1_300k_sintel_final_384x768.pth"
        in urls
    )
    assert (
        "https://huggingface.co/LiheYoung/depth-anything-small-hf/resolve/main/config.json" in urls
    )


def test_offline_list_and_verify_name_every_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCANIM_WEIGHTS", str(tmp_path / "cache"))
    assert main(["list"]) == 0
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert out.count("missing    ") == 2 * 6
    for entry in ENTRIES.values():
        for f in entry.files:
            assert str(entry_path(entry.name, f.path)) in out and f.source_url() in out
    assert f"pose.detector={tmp_path}/cache/dwpose/yolox_l.onnx" in out


def test_fetch_over_http_records_and_verifies_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: tuple[str, Path]
) -> None:
    url, root = mirror
    payloads = publish(root)
    monkeypatch.setenv("MCANIM_WEIGHTS", str(tmp_path / "cache"))
    assert main(["fetch", "dwpose", "pwcnet", "--mirror", url]) == 0
    manifest = read_manifest()
    assert set(manifest) == {k for k in payloads if not k.startswith("depth_anything")}
    for key, record in manifest.items():
        assert (tmp_path / "cache" / key).read_bytes() == payloads[key]
        assert record["sha256"] == hashlib.sha256(payloads[key]).hexdigest()
        assert record["adopted"] is False
    assert main(["verify", "dwpose", "pwcnet"]) == 0
    assert not list((tmp_path / "cache").rglob("*.part"))
    # an altered file fails verification; fetch --force restores it
    (tmp_path / "cache" / "dwpose" / "yolox_l.onnx").write_bytes(b"tampered")
    assert main(["verify", "dwpose"]) == 1
    assert main(["fetch", "dwpose", "--force", "--mirror", url]) == 0
    assert main(["verify", "dwpose"]) == 0


def test_fetch_adopts_hand_placed_files_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: tuple[str, Path]
) -> None:
    url, _ = mirror  # nothing published: every download is a 404
    monkeypatch.setenv("MCANIM_WEIGHTS", str(tmp_path / "cache"))
    placed = entry_path("pwcnet", ENTRIES["pwcnet"].files[0].path)
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"copied by hand")
    assert main(["fetch", "pwcnet", "dwpose", "--mirror", url]) == 1  # dwpose: 404
    manifest = read_manifest()
    record = manifest["pwcnet/" + placed.name]
    assert record["adopted"] is True
    assert record["sha256"] == hashlib.sha256(b"copied by hand").hexdigest()
    assert not (tmp_path / "cache" / "dwpose" / "yolox_l.onnx").exists()
    assert weights.mirrored("https://a.b/c/d.pth", url) == f"{url}/a.b/c/d.pth"


# ---- hashing, assets, safe state dicts, strict loading ---------------------------------------


def test_sha256_file_follows_changes_and_backend_identity(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"first")
    assert sha256_file(path) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second, longer")  # a hash cached by path alone would go stale here
    assert sha256_file(str(path)) == hashlib.sha256(b"second, longer").hexdigest()
    ident = backend_identity("movenet", str(path), extra=1)
    assert ident == {
        "name": "movenet",
        "model": str(path.resolve()),
        "sha256": hashlib.sha256(b"second, longer").hexdigest(),
        "extra": 1,
    }
    assert backend_identity("dis", preset="fast")["sha256"] is None


def test_assets_dir_is_the_env_else_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCANIM_ASSETS", "/data/assets")
    assert assets_dir() == Path("/data/assets")
    monkeypatch.delenv("MCANIM_ASSETS")
    assert assets_dir() == Path(__file__).resolve().parents[3] / "shared" / "assets"
