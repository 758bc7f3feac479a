"""A Table 4 ablation variant trained for real: tiny stage 1 without the depth-order guider
(``stage.guiders=[pose,flow,reference_pose]``) through the ``deepspeed`` launcher on the CPU,
exported with the training data's extractors recorded, then animated by ``model.animate``.
The same chain at full scale is the "must show" of issue 15 (docs/train.md, "Stages as
data")."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from model import animate
from model.folder import read_model_config
from model.init import main as model_init
from preprocess.config import PreprocessConfig
from shards.schema import with_format_version
from tests.model.test_inputs import person
from tests.train.helpers import write_train_output
from tests.train.launcher import folder, launch, metrics

pytestmark = pytest.mark.timeout(900)
KEPT = ["pose", "flow", "reference_pose"]
BACKENDS = {
    "pose": {"name": "movenet", "model": "/models/movenet.onnx", "sha256": "12" * 32},
    "flow": {"name": "dis", "model": "", "sha256": None, "preset": "medium"},
    "depth": {"name": "heuristic", "model": "", "sha256": None, "rule": "feet"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ablation")
    data = base / "data"
    write_train_output(data, [[1, 2], [2, 2], [1]])
    (data / "backends.json").write_text(json.dumps(with_format_version(dict(BACKENDS))))
    assert model_init(["--preset", "tiny", "--out", str(base / "init")]) == 0
    out = base / "no_order"
    output = launch(
        "tiny_stage1.yaml",
        f"output_dir={out}",
        f"data.root={data}",
        f"init_from={base / 'init'}",
        "data.workers=1",
        "stage.guiders=[pose,flow,reference_pose]",
        "train.max_steps=2",
        "checkpoint.every=2",
        "validation.every=2",
    )
    (out / "launcher.log").write_text(output)
    return {"base": base, "data": data, "init": base / "init", "out": out}


def test_the_variant_trains_and_exports_without_the_order_guider(run: dict[str, Path]) -> None:
    out = run["out"]
    log = (out / "launcher.log").read_text()
    assert "guiders ['order'] removed" in log
    assert [m["step"] for m in metrics(out)] == [1, 2]
    init, export = folder(run["init"]), folder(out / "export")
    assert {k.split(".")[0] for k in export["guiders"]} == set(KEPT)  # not built, not stored
    for name in KEPT:  # trained: every kept guider moved from its initialisation
        keys = [k for k in export["guiders"] if k.startswith(f"{name}.")]
        assert any(not torch.equal(init["guiders"][k], export["guiders"][k]) for k in keys), name
    cfg = read_model_config(out / "export")
    assert cfg.guiders.names == KEPT
    assert list((out / "validation").glob("step_00000002_*.mp4"))  # validated as inference


def test_the_export_records_the_training_data_extractors(run: dict[str, Path]) -> None:
    record = read_model_config(run["out"] / "export").preprocessing
    assert record.recorded and record.data == str(run["data"])
    assert record.backends == BACKENDS
    assert record.pose == PreprocessConfig().pose and record.depth == PreprocessConfig().depth
    text = yaml.safe_load((run["out"] / "export" / "config.yaml").read_text())
    assert text["format_version"] == 2 and text["preprocessing"]["pose"]["backend"] == "movenet"


def test_the_variant_animates(run: dict[str, Path], tmp_path: Path) -> None:
    kps = np.stack([np.stack([person(30 + 3 * t, 60, 40), person(70, 62, 40)]) for t in range(4)])
    np.save(tmp_path / "driving.npy", kps)  # (4, 2, 133, 3) in a 64x96 source
    np.save(tmp_path / "ref_pose.npy", kps[0])
    cv2.imwrite(str(tmp_path / "ref.png"), np.full((64, 96, 3), 100, np.uint8))
    argv = ["--checkpoint", str(run["out"] / "export"), "--reference", str(tmp_path / "ref.png")]
    argv += ["--driving", str(tmp_path / "driving.npy"), "--pose-size", "64x96"]
    argv += ["--reference-pose", str(tmp_path / "ref_pose.npy"), "--out", str(tmp_path / "a.mp4")]
    argv += ["--steps", "2", "--height", "64", "--width", "48"]
    assert animate.main(argv) == 0
    assert (tmp_path / "a.mp4").stat().st_size > 0
