"""Inference uses the training data's extractors: a model folder's ``preprocessing`` record
becomes ``python -m model.animate``'s defaults, a run that changes them is warned, recorded
weights that are missing here are a clear error, and a folder that records none (model.init)
uses the configured extractors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from model import animate
from model.config import PreprocessingRecord
from model.folder import read_model_config, save_model_folder
from preprocess.config import DepthConfig, FlowConfig, PoseConfig
from preprocess.depth import create_depth_backend
from preprocess.weights import sha256_file
from tests.model.helpers import tiny_model
from tests.model.test_inputs import person


def recorded_folder(
    tmp_path: Path, pose_cfg: PoseConfig, depth_cfg: DepthConfig, **ids: Any
) -> Path:
    """A tiny model folder recording ``pose_cfg`` / ``depth_cfg`` (and the backend identities
    ``ids`` by kind) as its training data's extractors."""
    model = tiny_model()
    model.cfg.preprocessing = PreprocessingRecord(
        data="/data/ds", pose=pose_cfg, flow=FlowConfig(), depth=depth_cfg, backends=ids
    )
    return save_model_folder(model, tmp_path / "model")


def job(tmp_path: Path, checkpoint: Path, reference_pose: bool = False) -> list[str]:
    """A 3-frame pose-file job at 32x24 with one DDIM step (and a reference image)."""
    kps = np.stack([person(200 + 20 * t, 900, 600)[None] for t in range(3)])  # (3, 1, 133, 3)
    np.save(tmp_path / "driving.npy", kps)
    cv2.imwrite(str(tmp_path / "ref.png"), np.full((960, 540, 3), 120, np.uint8))
    argv = ["--checkpoint", str(checkpoint), "--reference", str(tmp_path / "ref.png")]
    argv += ["--driving", str(tmp_path / "driving.npy"), "--pose-size", "960x540"]
    argv += ["--out", str(tmp_path / "o.mp4"), "--steps", "1", "--height", "32", "--width", "24"]
    if reference_pose:
        np.save(tmp_path / "ref_pose.npy", kps[0])
        argv += ["--reference-pose", str(tmp_path / "ref_pose.npy")]
    return argv


def movenet_record(movenet: Path, sha: str | None = None) -> dict[str, Any]:
    pose = PoseConfig(model=str(movenet), input_size=256, person_score=0.25, device="cpu")
    ident = {"name": "movenet", "model": str(movenet), "sha256": sha or sha256_file(movenet)}
    depth_ident = create_depth_backend(DepthConfig()).identity()  # as backends.json has it
    return {"pose": pose, "depth": DepthConfig(), "pose_id": ident, "depth_id": depth_ident}


def test_the_record_is_stored_and_becomes_the_defaults(tmp_path: Path, movenet_onnx: Path) -> None:
    r = movenet_record(movenet_onnx)
    folder = recorded_folder(tmp_path, r["pose"], r["depth"], pose=r["pose_id"])
    record = read_model_config(folder).preprocessing
    assert record.recorded and record.pose == r["pose"] and record.backends["pose"] == r["pose_id"]
    cfg = animate.parse_args(job(tmp_path, folder))
    assert (cfg.pose.input_size, cfg.pose.person_score, cfg.pose.model) == (
        256,
        0.25,
        str(movenet_onnx),
    )
    assert cfg.pose.device == "auto"  # how the data's run executed is not recorded behaviour
    # flags and overrides still win over the record
    cfg = animate.parse_args([*job(tmp_path, folder), "--pose-backend", "precomputed"])
    assert cfg.pose.backend == "precomputed" and cfg.pose.input_size == 256
    cfg = animate.parse_args([*job(tmp_path, folder), "pose.input_size=384"])
    assert cfg.pose.input_size == 384


def test_animate_detects_with_the_recorded_settings_and_warns_on_changes(
    tmp_path: Path,
    movenet_onnx: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = movenet_record(movenet_onnx)
    folder = recorded_folder(tmp_path, r["pose"], r["depth"], pose=r["pose_id"], depth=r["depth_id"])  # fmt: skip
    used: list[PoseConfig] = []
    create = animate.create_pose_backend

    def spy(cfg: PoseConfig) -> Any:
        used.append(cfg)
        return create(cfg)

    monkeypatch.setattr(animate, "create_pose_backend", spy)
    assert animate.main(job(tmp_path, folder)) == 0
    assert [(c.input_size, c.person_score) for c in used] == [(256, 0.25)]  # created once
    assert "differs from the model's training data" not in caplog.text
    caplog.clear()
    assert animate.main([*job(tmp_path, folder), "pose.person_score=0.5"]) == 0
    assert "pose.person_score: 0.25 (training data) -> 0.5 (this run)" in caplog.text
    # other weights under the recorded path: the identity (sha256) differs
    r = movenet_record(movenet_onnx, sha="0" * 64)
    other = recorded_folder(tmp_path / "b", r["pose"], r["depth"], pose=r["pose_id"])
    caplog.clear()
    assert animate.main(job(tmp_path, other)) == 0
    assert "pose sha256: '0000000000" in caplog.text and "(training data)" in caplog.text


def test_missing_recorded_weights_are_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dw = PoseConfig(backend="dwpose", model="/gone/dw-ll_ucoco_384.onnx", detector="/gone/yolox_l.onnx")  # fmt: skip
    ident = {"name": "dwpose", "model": dw.model, "sha256": "ab" * 32}
    folder = recorded_folder(tmp_path, dw, DepthConfig(), pose=ident)
    assert animate.main(job(tmp_path, folder)) == 2
    text = " ".join(caplog.text.split())
    assert "/gone/yolox_l.onnx" in text and "python -m preprocess.weights fetch dwpose" in text
    assert "was trained on data whose pose came from dwpose (weights /gone/dw-ll_ucoco_384.onnx, sha256 abababababab" in text  # fmt: skip
    assert "choose another pose extractor explicitly (pose.backend=" in text
    # the depth extractor likewise (the reference pose is given: no pose backend needed)
    da = DepthConfig(backend="depth_anything", model="/gone/depth-anything-small-hf")
    folder = recorded_folder(tmp_path / "d", PoseConfig(), da, depth={"name": "depth_anything"})
    caplog.clear()
    assert animate.main(job(tmp_path, folder, reference_pose=True)) == 2
    text = " ".join(caplog.text.split())
    assert "whose depth came from depth_anything" in text and "depth.model" in text


def test_a_folder_without_record_uses_the_configured_extractors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = save_model_folder(tiny_model(), tmp_path / "init")  # as python -m model.init
    assert not read_model_config(folder).preprocessing.recorded
    cfg = animate.parse_args(job(tmp_path, folder, reference_pose=True))
    assert cfg.pose == PoseConfig() and cfg.depth == DepthConfig()
    assert animate.main(job(tmp_path, folder, reference_pose=True)) == 0
    assert "records no extractors of training data" in caplog.text
    assert "pose.backend=movenet and depth.backend=heuristic as configured" in caplog.text
