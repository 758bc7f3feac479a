"""DWPose backend (``pose.backend=dwpose``): plumbing on random stand-ins, channel order and
normalisation against known answers.

Stand-ins (:mod:`preprocess.standins`): the detector is a planted YOLOX head plus a small random
conv net of the frame; the pose model a random conv net whose keypoints depend on every pixel
and channel of its crop. The known-answer tests use probe models that read one input channel
only (:func:`~preprocess.standins.write_yolox_probe_onnx`,
:func:`~preprocess.standins.write_pose_probe_onnx`): for a frame of known colours the
detector's person score and the keypoints' position and score follow by hand from the
letterbox, the channel order (YOLOX BGR, RTMPose RGB) and the ImageNet normalisation.
Parity with rtmlib, component by component on real frames: tests/preprocess/test_dwpose_parity.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose import create_pose_backend
from preprocess.pose.dwpose import DWPoseBackend, decode_simcc, decode_yolox
from preprocess.pose.topdown import box_to_crop, crop_matrix, letterbox
from preprocess.standins import (
    planted_head,
    write_dwpose_onnx,
    write_pose_probe_onnx,
    write_yolox_onnx,
    write_yolox_probe_onnx,
)
from tests.media import read_frames

FRAME_HW = (320, 480)  # letterbox ratio 640 / 480 = 4/3
RATIO = 640 / 480
# (cx, cy, w, h, score, class) in detector-input pixels
PERSON = (168.0, 196.0, 100.0, 200.0, 0.81, 0)
DUPLICATE = (178.0, 200.0, 100.0, 196.0, 0.5, 0)  # next cell, IoU 0.77: suppressed by NMS
WEAK = (500.0, 100.0, 60.0, 120.0, 0.1, 0)  # below person_score
NOT_PERSON = (400.0, 300.0, 80.0, 80.0, 0.95, 2)  # a car
SECOND = (420.0, 220.0, 80.0, 240.0, 0.6, 0)


def frame_box(b: tuple[float, ...]) -> np.ndarray:
    cx, cy, w, h = b[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) / RATIO


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dwpose")
    head = planted_head((640, 640), [PERSON, DUPLICATE, WEAK, NOT_PERSON, SECOND])
    return {
        "detector": write_yolox_onnx(d / "yolox_l.onnx", head),
        "detector_b1": write_yolox_onnx(d / "yolox_b1.onnx", head, batch=1),
        "pose": write_dwpose_onnx(d / "dw-ll_ucoco_384.onnx"),
        "pose_b4": write_dwpose_onnx(d / "dw_b4.onnx", batch=4),
    }


def backend(models: dict[str, Path], det: str = "detector", pose: str = "pose", **kw: object):
    settings: dict[str, Any] = {"person_score": 0.3, "device": "cpu", **kw}
    cfg = PoseConfig(
        backend="dwpose", detector=str(models[det]), model=str(models[pose]), **settings
    )
    b = create_pose_backend(cfg)
    assert isinstance(b, DWPoseBackend)
    return b


def test_letterbox_is_top_left_on_grey_and_bgr_untouched() -> None:
    frame = np.zeros((*FRAME_HW, 3), np.uint8)
    frame[..., 0] = 10  # channel order is kept (the caller passes BGR)
    img, ratio = letterbox(frame, (640, 640))
    assert ratio == pytest.approx(RATIO)
    assert img.shape == (3, 640, 640) and img.dtype == np.float32
    assert (img[0, :426, :] == 10).all() and (img[1, :426, :] == 0).all()
    assert (img[:, 427:, :] == 114).all()  # 320 * 4/3 = 426.67 -> 426 rows of image


def test_planted_yolox_boxes_decode_to_frame_pixels_with_nms() -> None:
    head = planted_head((640, 640), [PERSON, DUPLICATE, WEAK, NOT_PERSON, SECOND])
    boxes, scores = decode_yolox(head, (640, 640), RATIO, 0.3, 0.45)
    assert len(boxes) == 2  # duplicate suppressed, weak and non-person dropped
    np.testing.assert_allclose(boxes[0], frame_box(PERSON), atol=1e-3)
    np.testing.assert_allclose(boxes[1], frame_box(SECOND), atol=1e-3)
    np.testing.assert_allclose(scores, [0.81, 0.6], atol=1e-5)


def test_crop_affine_and_simcc_inverse_are_exact() -> None:
    crop = box_to_crop(0, np.array([100.0, 50.0, 160.0, 250.0]), (384, 288))
    # padded 1.25: 75 x 250, widened to the 288:384 aspect: 187.5 x 250
    np.testing.assert_allclose(crop.scale, [187.5, 250.0])
    np.testing.assert_allclose(crop.centre, [130.0, 150.0])
    m = crop_matrix(crop, (384, 288))
    point = np.array([117.0, 201.0])
    in_crop = m[:, :2] @ point + m[:, 2]
    simcc_x = np.zeros((1, NUM_KEYPOINTS, 576), np.float32)
    simcc_y = np.zeros((1, NUM_KEYPOINTS, 768), np.float32)
    ix, iy = round(in_crop[0] * 2), round(in_crop[1] * 2)
    simcc_x[0, 5, ix], simcc_y[0, 5, iy] = 0.9, 0.7
    out = decode_simcc(simcc_x, simcc_y, [crop], (384, 288))
    assert out.shape == (1, NUM_KEYPOINTS, 3)
    np.testing.assert_allclose(out[0, 5, :2], point, atol=0.5 * 187.5 / 288 + 1e-6)
    assert out[0, 5, 2] == pytest.approx(0.7)  # the smaller of the two maxima
    assert out[0, 0, 2] == 0.0


def test_crop_matrix_equals_the_three_point_recipe_of_mmpose() -> None:
    """mmpose/rtmlib build the warp from 3 point pairs: the centre, a point half the crop width
    above it, and the third corner (that vector turned 90 degrees about the second point);
    our closed form must be the same matrix."""
    crop = box_to_crop(0, np.array([30.0, 40.0, 90.0, 100.0]), (384, 288))  # wide: w > h * 0.75
    c, w = crop.centre, crop.scale[0]
    up, left = np.array([0.0, -w / 2]), np.array([-w / 2, 0.0])
    src = np.array([c, c + up, c + up + left], np.float32)  # 3rd: turned about the 2nd
    dst = np.array([[144, 192], [144, 192 - 144], [144 - 144, 192 - 144]], np.float32)
    np.testing.assert_allclose(
        crop_matrix(crop, (384, 288)), cv2.getAffineTransform(src, dst), atol=1e-4
    )
    np.testing.assert_allclose(crop.scale, [75.0, 100.0])


IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, mmpose's data preprocessor
IMAGENET_STD = (58.395, 57.12, 57.375)


@pytest.mark.parametrize(("channel", "colour_index"), [(0, 2), (2, 0)])
def test_detector_reads_bgr_with_a_grey_letterbox(
    tmp_path: Path, models: dict[str, Path], channel: int, colour_index: int
) -> None:
    """A probe detector whose person score is mean(input channel) / 255: for a one-colour
    frame the score follows from the letterbox by hand, and only BGR gives it."""
    probe = write_yolox_probe_onnx(tmp_path / "probe.onnx", PERSON[:4], channel)
    colour = (200, 60, 20)  # RGB: BGR channel 0 = 20, channel 2 = 200
    frames = np.broadcast_to(np.array(colour, np.uint8), (1, *FRAME_HW, 3)).copy()
    rows = int(FRAME_HW[0] * RATIO)  # 426 image rows of the 640, the rest grey 114
    value = colour[colour_index]  # the frame's value in BGR channel `channel`
    score = (rows * value + (640 - rows) * 114) / 640 / 255  # 0.2017 (B) or 0.6715 (R)
    for threshold, people in ((score - 0.002, 1), (score + 0.002, 0)):  # score pinned
        b = backend({**models, "detector": probe}, person_score=threshold)
        found = b.detect_frames(frames)[0]
        assert len(found) == people, (channel, threshold, score)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_pose_model_reads_rgb_normalised_with_imagenet_statistics(
    tmp_path: Path, channel: int
) -> None:
    """A probe pose model that puts every keypoint on the brightest pixel of input channel
    ``channel``: a uniform block of known colour comes back at its frame position, with the
    score (value - mean) / std of that channel in RGB order."""
    d = tmp_path
    frame_hw = (640, 640)  # letterbox ratio 1: planted boxes are frame boxes
    probe = {
        "detector": write_yolox_onnx(
            d / "det.onnx", planted_head((640, 640), [(300.0, 320.0, 160.0, 320.0, 0.9, 0)]), gain=0
        ),
        "pose": write_pose_probe_onnx(d / "probe.onnx", channel),
    }
    colour = (220, 180, 250)  # RGB, every channel above ImageNet's mean
    frames = np.zeros((1, *frame_hw, 3), np.uint8)
    x0, y0 = 283, 401
    frames[0, y0 : y0 + 9, x0 : x0 + 9] = colour  # a 9 x 9 block inside the box
    (kp,) = backend(probe).detect_frames(frames)[0]
    want = (colour[channel] - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
    np.testing.assert_allclose(kp[:, 2], want, rtol=1e-5)
    crop_px = 160 * 1.25 / 288  # frame pixels per crop pixel (the crop is 200 px wide)
    assert (kp[:, 0] >= x0 - crop_px).all() and (kp[:, 0] <= x0 + 9).all()
    assert (kp[:, 1] >= y0 - crop_px).all() and (kp[:, 1] <= y0 + 9).all()


def test_fixed_batch_models_give_the_same_people(models: dict[str, Path]) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, *FRAME_HW, 3), dtype=np.uint8)
    dynamic = backend(models, batch_size=4)
    fixed = backend(models, det="detector_b1", pose="pose_b4")
    assert dynamic.pose.fixed_batch is None and fixed.pose.fixed_batch == 4
    assert fixed.detector.fixed_batch == 1
    a, b = dynamic.detect_frames(frames), fixed.detect_frames(frames)  # 6 crops: 4 + 2 padded to 4
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_no_detection_means_no_people(tmp_path: Path, models: dict[str, Path]) -> None:
    empty = write_yolox_onnx(tmp_path / "empty.onnx", planted_head((640, 640), []))
    b = backend({**models, "detector": empty})
    people = b.detect_frames(np.zeros((2, *FRAME_HW, 3), np.uint8))
    assert [p.shape for p in people] == [(0, NUM_KEYPOINTS, 3)] * 2
    assert b.track_frames(np.zeros((2, *FRAME_HW, 3), np.uint8)).shape == (2, 0, NUM_KEYPOINTS, 3)


def test_missing_files_name_key_and_source(tmp_path: Path, models: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError, match=r"pose\.detector.*yzd-v/DWPose"):
        create_pose_backend(PoseConfig(backend="dwpose", model=str(models["pose"])))
    missing = tmp_path / "dw-ll_ucoco_384.onnx"
    with pytest.raises(
        FileNotFoundError, match=r"dw-ll_ucoco_384\.onnx.*pose\.model.*weights fetch"
    ):
        create_pose_backend(
            PoseConfig(backend="dwpose", detector=str(models["detector"]), model=str(missing))
        )


def test_movenet_and_dwpose_share_the_array_layout(
    models: dict[str, Path], movenet_onnx: Path, vtest: Path
) -> None:
    frames = read_frames(vtest, 4)
    movenet = create_pose_backend(PoseConfig(model=str(movenet_onnx), input_size=256))
    outputs = {"movenet": movenet, "dwpose": backend(models)}
    for name, b in outputs.items():
        people = b.detect_frames(frames)
        assert len(people) == 4, name
        for p in people:
            assert p.ndim == 3 and p.shape[1:] == (NUM_KEYPOINTS, 3) and p.dtype == np.float32
        tracked = b.track_frames(frames)
        assert tracked.ndim == 4 and tracked.shape[0] == 4 and tracked.shape[2:] == (133, 3), name
        assert tracked.dtype == np.float32
    dw = outputs["dwpose"].detect_frames(frames)
    assert all((p[:, 17:, 2] > 0).any() for p in dw if len(p))  # whole body: all 133 filled
