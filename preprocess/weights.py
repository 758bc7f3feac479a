"""Weights on disk, one place for ``preprocess`` and ``model``: cache, hashes, the catalogue.

- where weights live: the cache folder :func:`cache_dir` (``model.metrics`` keeps its files in
  ``metrics/`` inside it) and the real test assets :func:`assets_dir`;
- what they are: :func:`sha256_file`, and :func:`backend_identity`, the ``{"name", "model",
  "sha256", ...}`` every extractor backend records in each clip's metadata (compared on resume);
- how they load: :mod:`preprocess.state_dict` (safe reading, strict loading);
- the extractors' public weights (DWPose, PWC-Net, Depth Anything): where each comes from,
  fetched into the cache with a sha256 manifest by the command line below.

    python -m preprocess.weights list                  # every file: present / missing, where
    python -m preprocess.weights fetch [NAME ...]      # download what is missing (network)
    python -m preprocess.weights verify [NAME ...]     # sha256 against the manifest; exit 1 if
                                                       # anything is missing or altered

The cache is ``$MCANIM_WEIGHTS`` (default ``~/.cache/mcanim/weights``), one folder per entry
(``dwpose/``, ``pwcnet/``, ``depth_anything/depth-anything-small-hf/``), and
``manifest.json`` there records each file's sha256, size and source when it is fetched (or
adopted: ``fetch`` records a file placed there by hand instead of downloading it). Hub files
come from ``$HF_ENDPOINT`` (default https://huggingface.co) as ``/{repo}/resolve/main/{file}``;
with ``--mirror URL`` (or ``$MCANIM_WEIGHTS_MIRROR``) every official URL
``https://HOST/PATH`` is fetched from ``URL/HOST/PATH`` instead (an internal mirror). Downloads
stream to a temporary name in the cache and are renamed when complete. Backends also take
explicit paths (``pose.detector``, ``pose.model``, ``flow.weights``, ``depth.model``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shards.config import HelpFormatter
from shards.logs import setup_logging
from shards.storage import atomic_path, write_text

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


# ---- where weights live, and what they are -------------------------------------------------


def cache_dir() -> Path:
    """``$MCANIM_WEIGHTS``, default ``~/.cache/mcanim/weights``."""
    return Path(os.environ.get("MCANIM_WEIGHTS") or "~/.cache/mcanim/weights").expanduser()


def assets_dir() -> Path:
    """The real test assets (videos, small models): ``$MCANIM_ASSETS``, default
    ``../shared/assets`` beside the repository. Not checked here: callers say what is missing."""
    env = os.environ.get("MCANIM_ASSETS")
    return (
        Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "shared" / "assets"
    )


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, computed once per (path, size, modification time) in a process."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backend_identity(name: str, model: str = "", **extra: object) -> dict[str, object]:
    """``{"name", "model", "sha256", ...extra}`` of a backend: recorded in every clip's metadata
    and compared on resume. ``model`` is a weights file (resolved) or ''; sha256 is None
    without a file."""
    sha = sha256_file(model) if model and Path(model).is_file() else None
    return {
        "name": name,
        "model": str(Path(model).resolve()) if model else "",
        "sha256": sha,
        **extra,
    }


# ---- the extractors' weights: catalogue, manifest, download --------------------------------------


@dataclass(frozen=True)
class WeightFile:
    """One file of an entry: its path inside the entry's folder and its official source."""

    path: str
    hub_repo: str = ""
    """Hugging Face hub repo id (the file is ``path`` in it), or '' for a plain URL."""
    url: str = ""

    def source_url(self) -> str:
        if self.hub_repo:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
            return f"{endpoint}/{self.hub_repo}/resolve/main/{self.path}"
        return self.url


@dataclass(frozen=True)
class Entry:
    """The weights one backend needs."""

    name: str
    backend: str
    folder: str
    files: tuple[WeightFile, ...]
    keys: tuple[tuple[str, str], ...]
    """(config key, path inside the folder: '.' for the folder itself) to set."""


_DWPOSE = "yzd-v/DWPose"
_DEPTH = "LiheYoung/depth-anything-small-hf"
_PWC = "pwcnet_ft_4x1_300k_sintel_final_384x768.pth"
ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "dwpose",
            "pose.backend=dwpose",
            "dwpose",
            (WeightFile("yolox_l.onnx", _DWPOSE), WeightFile("dw-ll_ucoco_384.onnx", _DWPOSE)),
            (("pose.detector", "yolox_l.onnx"), ("pose.model", "dw-ll_ucoco_384.onnx")),
        ),
        Entry(
            "pwcnet",
            "flow.backend=pwcnet",
            "pwcnet",
            (WeightFile(_PWC, url=f"https://download.openmmlab.com/mmflow/pwcnet/{_PWC}"),),
            (("flow.weights", _PWC),),
        ),
        Entry(
            "depth_anything",
            "depth.backend=depth_anything",
            "depth_anything/depth-anything-small-hf",
            tuple(
                WeightFile(f, _DEPTH)
                for f in ("config.json", "model.safetensors", "preprocessor_config.json")
            ),
            (("depth.model", "."),),
        ),
    )
}


def entry_path(name: str, path: str = ".") -> Path:
    """Where an entry's file (or, with '.', its folder) lives in the cache."""
    return (cache_dir() / ENTRIES[name].folder / path).resolve()


def _relative(entry: Entry, f: WeightFile) -> str:
    return f"{entry.folder}/{f.path}"


def read_manifest() -> dict[str, dict[str, object]]:
    path = cache_dir() / MANIFEST
    if not path.is_file():
        return {}
    files = json.loads(path.read_text()).get("files", {})
    return files if isinstance(files, dict) else {}


def write_manifest(files: dict[str, dict[str, object]]) -> None:
    write_text(
        str(cache_dir() / MANIFEST), json.dumps({"files": files}, indent=2, sort_keys=True) + "\n"
    )


def mirrored(url: str, mirror: str) -> str:
    """``https://HOST/PATH`` -> ``MIRROR/HOST/PATH`` (unchanged without a mirror)."""
    if not mirror:
        return url
    return f"{mirror.rstrip('/')}/{url.split('://', 1)[-1]}"


def download(url: str, dest: Path, timeout: float = 60.0) -> str:
    """Stream ``url`` to ``dest`` (temporary name, then rename); returns the sha256."""
    digest = hashlib.sha256()
    with (
        atomic_path(str(dest)) as tmp,
        urllib.request.urlopen(url, timeout=timeout) as response,
        open(tmp, "wb") as out,
    ):
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _status(entry: Entry, f: WeightFile, manifest: dict[str, dict[str, object]]) -> str:
    path = entry_path(entry.name, f.path)
    if not path.is_file():
        return "missing"
    record = manifest.get(_relative(entry, f))
    if record is None:
        return "unrecorded"
    return "ok" if record.get("sha256") == sha256_file(path) else "altered"


def _selected(names: list[str]) -> list[Entry]:
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        raise SystemExit(f"unknown weights {unknown}; known: {', '.join(ENTRIES)}")
    return [ENTRIES[n] for n in names] if names else list(ENTRIES.values())


def cmd_list(entries: list[Entry], *, check: bool) -> int:
    """Print every file's state, path and source; with ``check``, return 1 on any problem."""
    manifest = read_manifest()
    print(f"weights cache: {cache_dir()} (MCANIM_WEIGHTS)")
    bad = 0
    for entry in entries:
        keys = ", ".join(f"{k}={entry_path(entry.name, p)}" for k, p in entry.keys)
        print(f"\n{entry.name} ({entry.backend}; set {keys})")
        for f in entry.files:
            state = _status(entry, f, manifest) if check else _quick_status(entry, f)
            bad += state in ("missing", "altered")
            print(f"  {state:10s} {entry_path(entry.name, f.path)}")
            if state == "missing":
                print(f"             get it from {f.source_url()}")
            elif state == "altered":
                print(f"             sha256 differs from {MANIFEST}; fetch it again (--force)")
    if bad:
        print(
            f"\n{bad} file(s) missing or altered: run `python -m preprocess.weights fetch` on a "
            "machine with network, or download each from the URL shown and place it at the path "
            "shown (then `fetch` records it without downloading)."
        )
    return 1 if (check and bad) else 0


def _quick_status(entry: Entry, f: WeightFile) -> str:
    return "present" if entry_path(entry.name, f.path).is_file() else "missing"


def cmd_fetch(entries: list[Entry], *, mirror: str, force: bool) -> int:
    """Download missing files (record hand-placed ones); 1 if any download failed."""
    manifest = read_manifest()
    failed = 0
    for entry in entries:
        for f in entry.files:
            dest, key = entry_path(entry.name, f.path), _relative(entry, f)
            if dest.is_file() and not force:
                if key not in manifest:
                    manifest[key] = _record(dest, sha256_file(dest), f, adopted=True)
                    log.info("recorded %s (already present)", dest)
                continue
            url = mirrored(f.source_url(), mirror)
            log.info("fetching %s -> %s", url, dest)
            try:
                digest = download(url, dest)
            except OSError as err:
                failed += 1
                log.error("could not fetch %s: %s", url, err)
                continue
            manifest[key] = _record(dest, digest, f, adopted=False)
            write_manifest(manifest)
    write_manifest(manifest)
    return 1 if failed else 0


def _record(path: Path, digest: str, f: WeightFile, *, adopted: bool) -> dict[str, object]:
    return {
        "sha256": digest,
        "size": path.stat().st_size,
        "source": f.source_url(),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adopted": adopted,
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m preprocess.weights`` (every option explained)."""
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.weights",
        description="List, fetch and verify the public weights of the paper's extractors "
        "(DWPose, PWC-Net, Depth Anything) in the cache $MCANIM_WEIGHTS "
        "(default ~/.cache/mcanim/weights).",
        epilog="Exit codes: 0 done; 1 verify (or fetch) found a file missing or altered, or a "
        "download failed; 2 bad usage.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=("list", "fetch", "verify"),
        help="list: every file, present or missing, and where it goes; fetch: download what "
        "is missing (and record files placed by hand); verify: sha256 of every file against "
        "the manifest",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"entries (default all): {', '.join(ENTRIES)}"
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        default=os.environ.get("MCANIM_WEIGHTS_MIRROR", ""),
        help="fetch https://HOST/PATH from URL/HOST/PATH (default $MCANIM_WEIGHTS_MIRROR)",
    )
    parser.add_argument("--force", action="store_true", help="fetch: download even if present")
    parser.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help="logging level: DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))  # exits 2
    entries = _selected(args.names)
    if args.command == "fetch":
        rc = cmd_fetch(entries, mirror=args.mirror, force=args.force)
        return cmd_list(entries, check=True) or rc
    return cmd_list(entries, check=args.command == "verify")


if __name__ == "__main__":
    sys.exit(main())
