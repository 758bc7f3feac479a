"""``data.keys``: a keys file (from ``python -m shards select`` or the dataset browser's export)
limits training to those clips — select -> keys file -> ``select_clips`` -> the loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import preset_config
from preprocess.geometry import GeometryConfig
from shards.__main__ import main as shards_main
from shards.keys import MissingKeysError, read_keys
from shards.reader import read_clips
from tests.train.helpers import write_train_output
from train.config import DataConfig
from train.loader import ClipStream, select_clips

VIDEOS = [[1, 2], [3, 1, 1], [2, 2], [1]]  # people per clip, one list per video; 3 per shard


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys_out")
    write_train_output(out, VIDEOS)
    return out


def cfg_of(root: Path, **kw: object) -> DataConfig:
    base: dict[str, object] = {"root": str(root), "height": 64, "width": 48, "workers": 0}
    return DataConfig(**{**base, "shuffle_buffer": 4, **kw})  # type: ignore[arg-type]


def one_epoch(cfg: DataConfig, holdout: int = 0) -> list[str]:
    """Keys of one epoch of the single-reader training stream."""
    selection = select_clips(cfg, holdout)
    stream = ClipStream(cfg, selection, 1, GeometryConfig(), preset_config("tiny"))
    keys = []
    for example, _, (epoch, _), _ in stream:
        if epoch > 0:
            break
        keys.append(example.key)
    return keys


def test_select_keys_file_trains_on_exactly_those_clips(root: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    where = "characters_max >= 2 and bg_flow_mean > 3"
    assert shards_main(["select", str(root), "--where", where, "--to", str(keys_file)]) == 0
    chosen = keys_file.read_text().splitlines()
    table = read_clips(root).to_pylist()
    by_hand = [r["key"] for r in table if r["characters_max"] >= 2 and r["bg_flow_mean"] > 3]
    assert chosen == by_hand and 0 < len(chosen) < len(table)
    selection = select_clips(cfg_of(root, keys=str(keys_file)), holdout=0)
    assert set(selection.repeats) == set(chosen)
    holding = {r["shard"] for r in table if r["key"] in chosen}
    assert sorted(Path(s).name for s in selection.shards) == sorted(holding)
    assert sorted(one_epoch(cfg_of(root, keys=str(keys_file)))) == sorted(chosen)


def test_keys_and_where_both_apply(root: Path, tmp_path: Path) -> None:
    table = read_clips(root).to_pylist()
    picked = [r["key"] for r in table[::2]]  # every other clip
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# made by hand\n\n" + "\n".join(picked) + "\n")
    assert read_keys(keys_file) == picked
    cfg = cfg_of(root, keys=str(keys_file), where="characters_max = 1")
    single = {r["key"] for r in table if r["characters_max"] == 1}
    assert set(select_clips(cfg, holdout=0).repeats) == set(picked) & single
    assert set(picked) & single and set(picked) - single  # both filters matter here
    json_file = tmp_path / "sel.json"
    json_file.write_text(json.dumps({"keys": picked}))
    assert set(select_clips(cfg_of(root, keys=str(json_file)), 0).repeats) == set(picked)


def test_a_key_of_another_output_is_an_error(root: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    known = read_clips(root)["key"][0].as_py()
    keys_file.write_text(f"{known}\nffffffffffffffff_0000000\n")
    with pytest.raises(MissingKeysError, match="ffffffffffffffff_0000000"):
        select_clips(cfg_of(root, keys=str(keys_file)), holdout=0)
    to = str(tmp_path / "sel.txt")
    assert shards_main(["select", str(root), "--keys", str(keys_file), "--to", to]) == 2
    assert shards_main(["select", str(root), "--to", to]) == 2  # neither --where nor --keys
    keys_file.write_text(f"{known}\nnot a key/../x\n")
    with pytest.raises(ValueError, match="entry 2"):
        read_keys(keys_file)
    with pytest.raises(FileNotFoundError, match=r"nothing\.txt"):
        select_clips(cfg_of(root, keys=str(tmp_path / "nothing.txt")), holdout=0)
