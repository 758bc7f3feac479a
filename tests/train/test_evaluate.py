"""``python -m train.evaluate`` end to end on a tiny model and a tiny preprocessing output,
the ablation switch, and the trainer's validation metrics."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.components import build_image_processor
from model.config import SamplingConfig
from model.folder import load_model_folder
from model.init import main as model_init
from model.metrics.lpips import LPIPS
from model.metrics.suite import StandInI3D
from preprocess.geometry.canvas import GuiderArrays
from shards.reader import iter_samples
from tests.train.helpers import write_train_output
from train.evaluate import EvalConfig, ablated, animate_clips, build_cli, main, parse_args
from train.examples import inference_example
from train.validation import METRICS, validation_sample


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("evaluate")
    write_train_output(base / "data", [[1, 2], [2]], t=8)
    assert model_init(["--preset", "tiny", "--out", str(base / "model")]) == 0
    weights = base / "weights"  # published layouts written from random trees (plumbing)
    weights.mkdir()
    torch.manual_seed(0)
    state = LPIPS().state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, weights / "alexnet-owt-7be5be79.pth")  # fmt: skip
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, weights / "alex.pth")
    torch.jit.script(StandInI3D()).save(str(weights / "i3d_torchscript.pt"))
    return {"base": base, "data": base / "data", "model": base / "model", "weights": weights}


def test_evaluate_writes_every_metric_table_and_sheet(setup: dict[str, Path]) -> None:
    out = setup["base"] / "report"
    argv = [
        "--checkpoint", str(setup["model"]), "--data", str(setup["data"]), "--out", str(out),
        "--where", "characters_max >= 1", "--ablate", "none,reference_pose",
        "--weights", str(setup["weights"]), "--steps", "1", "--height", "32", "--width", "32",
        "--window", "8", "--stride", "4", "standard.size=40", "standard.clip_len=4",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["standard"]["size"] == 40
    assert report["settings"]["stand_in_features"] is False
    assert len(report["clips"]) == 3 and set(report["variants"]) == {"none", "reference_pose"}
    assert report["settings"]["model_guiders"] == ["pose", "flow", "order", "reference_pose"]
    m = report["variants"]["none"]["metrics"]
    assert m["frames"] == 24 and m["segments"] == 6
    for name in ("l1", "psnr", "ssim", "lpips", "fvd"):
        assert np.isfinite(m[name]), name
    assert 0 < m["l1"] < 1 and m["psnr"] < 100
    # FID / FID-VID: their files are absent, so they are skipped with the file named
    assert "pt_inception-2015-12-05-6726825d.pth" in m["skipped"]["fid"]
    assert "resnet-50-kinetics.pth" in m["skipped"]["fid_vid"]
    md = (out / "report.md").read_text()
    assert "| none |" in md and "| reference_pose |" in md and "TINY" in md
    assert "input zeroed at inference" in md and "zero that guider's input at inference" in md
    assert "<table" in (out / "report.html").read_text()
    sheet = cv2.imread(str(out / "sheets" / "none" / f"{report['clips'][0]}.png"))
    assert sheet is not None and sheet.shape == (
        4 * 32,
        4 * 32,
        3,
    )  # 4 rows of reference | pose | generated | real


def test_bad_inputs_are_clear_errors(setup: dict[str, Path], tmp_path: Path) -> None:
    common = ["--checkpoint", str(setup["model"]), "--out", str(tmp_path)]
    assert main([*common, "--data", str(setup["data"]), "--where", "characters_max > 9"]) == 2
    assert main([*common, "--data", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit):
        parse_args([*common, "--data", "x", "--ablate", "hands"])


def test_ablation_zeroes_exactly_one_guider_input() -> None:
    rng = np.random.default_rng(0)
    g = GuiderArrays(
        pose=rng.integers(1, 255, (2, 8, 8, 3), dtype=np.uint8),
        flow=rng.random((2, 8, 8, 2), dtype=np.float32) + 0.1,
        order=rng.integers(1, 255, (2, 8, 8), dtype=np.uint8),
        reference_pose=rng.integers(1, 255, (8, 8, 3), dtype=np.uint8),
    )
    assert ablated(g, "none") is g
    for variant in ("pose", "flow", "order", "reference_pose"):
        a = ablated(g, variant)
        for name in ("pose", "flow", "order", "reference_pose"):
            zeroed = not getattr(a, name).any()
            assert zeroed == (name == variant), (variant, name)


def test_validation_logs_the_cheap_metrics() -> None:
    v = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    assert {k: fn(v, v) for k, fn in METRICS.items()} == {"l1": 0.0, "psnr": 100.0, "ssim": 1.0}
    assert METRICS["psnr"](v // 2, v) < 100.0


def test_evaluation_and_validation_animate_alike(setup: dict[str, Path]) -> None:
    """Both call model.pipeline.generate on the same example: the same frames come out."""
    model = load_model_folder(setup["model"])
    sampling = SamplingConfig(steps=1, height=32, width=32, window=4, stride=2, seed=5)
    sample = next(iter(iter_samples(str(setup["data"]))))
    cfg = EvalConfig(data=str(setup["data"]), frames=5, sampling=sampling)
    evaluated = animate_clips(cfg, model, [sample.key])["none"][sample.key]
    processor = build_image_processor(model.cfg)
    example = inference_example(sample, 0, list(range(5)), (32, 32), model.cfg.geometry, processor)
    validated = validation_sample(model, example, sampling)
    assert np.array_equal(evaluated["generated"], validated.generated)
    assert np.array_equal(evaluated["real"], validated.real)
    assert validated.generated.shape == (5, 32, 32, 3)


def test_ablate_takes_the_model_guider_names(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--checkpoint", "m", "--out", "o", "--data", "d"]
    assert parse_args([*common, "--ablate", "none,pose,order"]).ablate == ["none", "pose", "order"]
    for old, new in (("depth_order", "order"), ("ref_pose", "reference_pose")):
        with pytest.raises(SystemExit):
            parse_args([*common, "--ablate", f"none,{old}"])
        assert f"{old} is now {new}" in capsys.readouterr().err
    # A guider the model does not have cannot be zeroed (a trained ablation has no input).
    model = load_model_folder(setup["model"])
    del model.guiders.guiders["order"]
    model.cfg.guiders.names = model.guiders.names
    cfg = EvalConfig(data=str(setup["data"]), ablate=["order"], sampling=SamplingConfig(steps=1))
    with pytest.raises(ValueError, match="no such guider"):
        animate_clips(cfg, model, ["x"])
    help_text = " ".join(build_cli()[1].format_help().split())
    assert "set to zero at inference on this same model" in help_text
    assert "Not the paper's Table 4 ablation" in help_text
