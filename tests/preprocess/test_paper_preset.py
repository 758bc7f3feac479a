"""``python -m preprocess --config jobs/preprocess/paper.yaml`` end to end, on a few real vtest
frames at a small size, with stand-in weight files of the public formats built here
(:mod:`preprocess.standins`: random conv-net YOLOX and DWPose ONNX files, the detector with two
planted person boxes; a tiny PWC-Net checkpoint in MMFlow's key names; a tiny Depth Anything
folder). The shards must validate and carry the two people, flow, and depth with ranks that
follow it. This run checks the plumbing; the numbers are checked by each extractor's parity and
known-answer tests (docs/extractors.md, "How the extractors are tested").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preprocess.__main__ import main as preprocess_main
from preprocess.config import PreprocessConfig
from preprocess.geometry import clip_geometry
from preprocess.standins import (
    TINY_PWCNET,
    planted_head,
    write_depth_anything,
    write_dwpose_onnx,
    write_pwcnet_checkpoint,
    write_yolox_onnx,
)
from shards.__main__ import main as shards_main
from shards.config import load_config
from shards.reader import iter_samples, read_clips

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "jobs" / "preprocess" / "paper.yaml"


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    # vtest stored at 192 x 144 -> letterbox ratio 640 / 192: two people-sized boxes
    boxes = [(200.0, 300.0, 120.0, 300.0, 0.9, 0), (470.0, 330.0, 120.0, 300.0, 0.8, 0)]
    return {
        "detector": write_yolox_onnx(d / "yolox_l.onnx", planted_head((640, 640), boxes)),
        "model": write_dwpose_onnx(d / "dw-ll_ucoco_384.onnx"),
        "flow": write_pwcnet_checkpoint(d / "pwcnet.pth", TINY_PWCNET),
        "depth": write_depth_anything(d / "depth-anything-small-hf"),
    }


def test_paper_preset_loads() -> None:
    cfg = load_config(PreprocessConfig, PAPER, [])
    assert (cfg.pose.backend, cfg.flow.backend, cfg.depth.backend) == (
        "dwpose",
        "pwcnet",
        "depth_anything",
    )
    assert cfg.pose.detector.endswith("dwpose/yolox_l.onnx")
    assert cfg.flow.weights.endswith("pwcnet/pwcnet_ft_4x1_300k_sintel_final_384x768.pth")


def test_paper_preset_writes_valid_shards_with_depth_and_ranks(
    tmp_path: Path, vtest: Path, standins: dict[str, Path]
) -> None:
    out = tmp_path / "out"
    code = preprocess_main(
        [
            "--input",
            str(vtest),
            "--output",
            str(out),
            "--config",
            str(PAPER),
            f"pose.detector={standins['detector']}",
            f"pose.model={standins['model']}",
            f"flow.weights={standins['flow']}",
            f"depth.model={standins['depth']}",
            "decode.short_side=144",
            "decode.max_frames=6",
            "decode.clip_frames=6",
            "decode.min_clip_frames=4",
            "pose.track_min_frames=2",
            "pose.device=cpu",
            "flow.device=cpu",
            "depth.device=cpu",
            "shards.x264_preset=ultrafast",
            "run.runner=local",
        ]
    )
    assert code == 0
    assert shards_main(["validate", str(out)]) == 0
    (sample,) = list(iter_samples(out))
    t, h, w = sample.mask.shape
    assert (t, h, w) == (6, 36, 48)
    assert sample.depth is not None and sample.depth.shape == (t, h, w)
    assert sample.depth.min() >= 0 and sample.depth.max() <= 1
    np.testing.assert_allclose(sample.depth.max((1, 2)), 1.0, atol=1e-3)  # normalised per frame
    assert sample.pose.shape[1:] == (2, 133, 3)  # the two planted people, tracked
    assert np.ptp(sample.pose[..., :2], axis=0).max() > 1  # keypoints follow the frames
    assert (sample.ranks >= 0).all() and sorted(sample.ranks[0].tolist()) == [0, 1]
    assert sample.flow.shape == (t, h, w, 2) and (sample.flow[0] == 0).all()
    assert np.abs(sample.flow[1:]).max() > 0
    backends = sample.meta["backends"]
    assert [backends[k]["name"] for k in ("pose", "flow", "depth")] == [
        "dwpose",
        "pwcnet",
        "depth_anything",
    ]
    assert len(backends["flow"]["sha256"]) == 64
    assert read_clips(out).num_rows == 1

    # the ranks are those of docs/design.md §3 from the stored depth map, and turn over with it
    geo = load_config(PreprocessConfig, PAPER, []).geometry
    size = (sample.meta["height"], sample.meta["width"])
    again = clip_geometry(sample.pose, sample.flow, size, geo, sample.depth)
    np.testing.assert_array_equal(again.ranks, sample.ranks)
    flipped = clip_geometry(sample.pose, sample.flow, size, geo, 1.0 - sample.depth)
    both = (sample.ranks >= 0).all(1)
    assert both.any()
    np.testing.assert_array_equal(flipped.ranks[both], 1 - sample.ranks[both])
