"""Pose backend registry and the real MoveNet MultiPose ONNX backend.

Accuracy is measured on the real COCO images against their COCO-WholeBody annotations with
the COCO object keypoint similarity (OKS, body sigmas, area = the annotation's area); people
are matched one-to-one per image (Hungarian on OKS).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from preprocess.clip import Clip, VideoInfo
from preprocess.config import PoseConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from preprocess.pose import (
    POSE_BACKENDS,
    PoseBackend,
    available_pose_backends,
    create_pose_backend,
    register_pose_backend,
)
from preprocess.pose.movenet import decode_output, input_geometry, prepare_frame
from tests.media import read_frames

log = logging.getLogger(__name__)

COCO_SIGMAS = (
    np.array([26, 25, 25, 35, 35, 79, 79, 72, 72, 62, 62, 107, 107, 87, 87, 89, 89]) / 1000.0
)

MIN_VISIBLE = 10  # annotated people with fewer visible body keypoints are not evaluated


@pytest.fixture(scope="module")
def movenet(movenet_onnx: Path) -> PoseBackend:
    return create_pose_backend(PoseConfig(model=str(movenet_onnx), input_size=512))


# ---- registry and errors -------------------------------------------------------------------


def test_builtin_backends_are_registered() -> None:
    assert {"movenet", "precomputed"} <= set(available_pose_backends())


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown pose backend 'nope'") as err:
        create_pose_backend(PoseConfig(backend="nope"))
    assert "movenet" in str(err.value) and "precomputed" in str(err.value)


class _Synthetic(PoseBackend):
    """Two people sliding right; detections listed in reverse order every other frame."""

    name = "synthetic"

    def detect_frames(self, frames: np.ndarray) -> list[np.ndarray]:
        out = []
        for t in range(len(frames)):
            people = np.zeros((2, NUM_KEYPOINTS, 3), np.float32)
            for p, x in enumerate((50.0, 200.0)):
                people[p, :17, 0] = x + 2 * t + np.arange(17)
                people[p, :17, 1] = 100 + 5 * np.arange(17)
                people[p, :17, 2] = 0.8
            out.append(people[::-1] if t % 2 else people)
        return out


def test_register_and_default_clip_keypoints_tracks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(POSE_BACKENDS, "_classes", dict(POSE_BACKENDS._classes))
    register_pose_backend("synthetic")(_Synthetic)
    assert "synthetic" in available_pose_backends()
    backend = create_pose_backend(PoseConfig(backend="synthetic"))
    clip = make_clip(np.zeros((6, 240, 320, 3), np.uint8))
    kps = backend.clip_keypoints(clip)
    assert kps.shape == (6, 2, NUM_KEYPOINTS, 3) and kps.dtype == np.float32
    np.testing.assert_allclose(kps[:, 0, 0, 0], 50 + 2 * np.arange(6))  # no swaps
    np.testing.assert_allclose(kps[:, 1, 0, 0], 200 + 2 * np.arange(6))
    with pytest.raises(ValueError, match="registered twice"):
        register_pose_backend("synthetic")(_Synthetic)


@pytest.mark.parametrize("model", ["", "/nonexistent/movenet.onnx"])
def test_missing_model_names_file_key_and_source(model: str) -> None:
    with pytest.raises(FileNotFoundError) as err:
        create_pose_backend(PoseConfig(backend="movenet", model=model))
    message = str(err.value)
    assert "pose.model" in message and "movenet_multipose.onnx" in message
    assert "tf2onnx" in message
    if model:
        assert model in message


def test_identity_hashes_the_weights(movenet: PoseBackend, movenet_onnx: Path) -> None:
    ident = movenet.identity()
    assert ident["name"] == "movenet"
    assert ident["model"] == str(movenet_onnx.resolve())
    assert ident["sha256"] == hashlib.sha256(movenet_onnx.read_bytes()).hexdigest()


# ---- MoveNet pre/post-processing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "input_size", "expected"),
    [
        ((576, 768), 512, (384, 512, 384, 512)),
        ((425, 640), 512, (340, 512, 352, 512)),
        ((1920, 1080), 256, (256, 144, 256, 160)),
        ((1920, 1080), 500, (512, 288, 512, 288)),  # 500 rounds up to 512
        ((100, 100), 256, (256, 256, 256, 256)),  # small frames are upscaled
    ],
)
def test_input_geometry(
    size: tuple[int, int], input_size: int, expected: tuple[int, int, int, int]
) -> None:
    assert input_geometry(*size, input_size) == expected
    batch = prepare_frame(np.full((*size, 3), 7, np.uint8), input_size)
    h, w, hp, wp = expected
    assert batch.shape == (1, hp, wp, 3) and batch.dtype == np.int32
    assert (
        np.all(batch[0, :h, :w] == 7) and np.all(batch[0, h:] == 0) and np.all(batch[0, :, w:] == 0)
    )


def test_decode_maps_padded_normalised_coordinates_to_frame_pixels() -> None:
    height, width = 1920, 1080  # input 256: resized 256x144, padded 256x160
    output = np.zeros((1, 6, 56), np.float32)
    # person 0: keypoint k at the frame point (x=100k, y=50k + 10) in padded-normalised units
    k = np.arange(17)
    output[0, 0, 0:51:3] = (50 * k + 10) * (256 / height) / 256  # y
    output[0, 0, 1:51:3] = 100 * k * (144 / width) / 160  # x: normalised by the padded width
    output[0, 0, 2:51:3] = 0.7
    output[0, 0, 55] = 0.9
    output[0, 1, 55] = 0.1  # below person_score: dropped
    people = decode_output(output, (height, width), 256, person_score=0.2)
    assert people.shape == (1, NUM_KEYPOINTS, 3)
    np.testing.assert_allclose(people[0, :17, 0], 100 * k, atol=1e-3)
    np.testing.assert_allclose(people[0, :17, 1], 50 * k + 10, atol=1e-3)
    np.testing.assert_allclose(people[0, :17, 2], 0.7)
    assert np.all(people[0, 17:] == 0)


def test_detect_frames_rejects_bad_input(movenet: PoseBackend) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        movenet.detect_frames(np.zeros((2, 64, 64), np.uint8))


# ---- MoveNet on real data ------------------------------------------------------------------


def oks(pred: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO OKS of (17, 3) predicted vs annotated (17, 3) keypoints over visible ones."""
    visible = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    e = d2 / (2 * area * (2 * COCO_SIGMAS) ** 2 + np.spacing(1))
    return float(np.exp(-e)[visible].mean())


def coco_oks(movenet: PoseBackend, assets: Path) -> list[float]:
    """Best one-to-one OKS of every evaluated annotated person (0 when unmatched)."""
    folder = assets / "images" / "coco_wholebody"
    data = json.loads((folder / "test_coco_wholebody.json").read_text())
    scores = []
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        anns = [a for a in anns if (np.array(a["keypoints"][2:51:3]) > 0).sum() >= MIN_VISIBLE]
        bgr = cv2.imread(str(folder / image["file_name"]))
        assert bgr is not None, image["file_name"]
        (dets,) = movenet.detect_frames(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None])
        gts = [np.array(a["keypoints"], np.float32).reshape(-1, 3)[:17] for a in anns]
        sim = np.array(
            [[oks(d[:17], g, a["area"]) for d in dets] for g, a in zip(gts, anns, strict=True)]
        )
        best = np.zeros(len(anns))
        if sim.size:
            rows, cols = linear_sum_assignment(-sim)
            best[rows] = sim[rows, cols]
        scores.extend(best.tolist())
    return scores


def test_movenet_accuracy_on_coco_wholebody_images(movenet: PoseBackend, assets: Path) -> None:
    scores = np.array(coco_oks(movenet, assets))
    recall50 = float((scores >= 0.5).mean())
    mean_matched = float(scores[scores >= 0.5].mean())
    log.info("MoveNet@512 on %d COCO people: OKS %s", len(scores), np.round(scores, 2).tolist())
    assert len(scores) == 12
    # measured: 11/12 people at OKS >= 0.5 (recall 0.92), mean OKS of those 0.87
    assert recall50 >= 10 / 12, scores
    assert mean_matched >= 0.75, scores


def make_clip(frames: np.ndarray) -> Clip:
    t, h, w = frames.shape[:3]
    info = VideoInfo("/videos/x.mp4", "vid", w, h, 10.0, t, 0, w, h, 10.0)
    return Clip(info, 0, frames, np.arange(t, dtype=np.int64))


def test_movenet_finds_the_vtest_pedestrians(movenet: PoseBackend, vtest: Path) -> None:
    frames = read_frames(vtest, 12)
    dets = movenet.detect_frames(frames)
    counts = [len(d) for d in dets]
    assert all(c >= 2 for c in counts), counts
    for d in dets:
        assert d.dtype == np.float32 and d.shape[1:] == (NUM_KEYPOINTS, 3)
        assert np.all(d[:, 17:] == 0)
        body = d[:, :17]
        confident = body[body[..., 2] >= 0.3]
        assert np.all((confident[:, 0] >= -5) & (confident[:, 0] <= 773))
        assert np.all((confident[:, 1] >= -5) & (confident[:, 1] <= 581))
    tracked = movenet.clip_keypoints(make_clip(frames))
    assert tracked.shape[0] == 12 and tracked.shape[1] >= 2


def test_movenet_portrait_video_single_dancer(dance: Path, movenet_onnx: Path) -> None:
    """1080x1920 portrait: one person, keypoints inside the frame. Input 256 (see docs/pose.md:
    at 512 this close-up dancer gets person scores 0.14-0.41)."""
    backend = create_pose_backend(PoseConfig(model=str(movenet_onnx), input_size=256))
    dets = backend.detect_frames(read_frames(dance, 4))
    for d in dets:
        assert len(d) == 1, [len(x) for x in dets]
        assert (d[0, :17, 2] >= 0.3).sum() >= 15
        xs, ys = d[0, :17, 0], d[0, :17, 1]
        assert 100 < xs.min() < xs.max() < 1000 and 150 < ys.min() < ys.max() < 1900
        assert ys[0] < ys[15]  # nose above the left ankle
