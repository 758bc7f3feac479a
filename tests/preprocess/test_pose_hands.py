"""Hands of ``pose.backend=topdown`` (COCO-WholeBody 91..132): crop placement, side, gate.

Hand-derived crop geometry, then the real MediaPipe hand landmark model (shared assets): on the
dance video each hand's wrist (91 left, 112 right) lies at the body's wrist of the same side
(9, 10), never the other's; hands below the size gate (the COCO images' 10-31 px hands) and
hands the model does not see stay at score 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from preprocess.config import PoseConfig
from preprocess.pose import PoseBackend, create_pose_backend
from preprocess.pose.hands import HAND_CROP, HAND_LENGTH, HAND_SHIFT, PRESENCE, hand_crops
from preprocess.pose.thunder import TopDownMoveNetBackend
from preprocess.pose.topdown import crop_matrix
from tests.preprocess.test_pose_topdown import topdown_config


def config(assets: Path, **kw: object) -> PoseConfig:
    """The top-down test config with NanoDet boxes only and the hand model."""
    hands = str(assets / "models" / "hand_landmark_full.onnx")
    return topdown_config(assets, box_sources=["nanodet"], hand_model=hands, **kw)


@pytest.fixture(scope="module")
def backend(assets: Path) -> PoseBackend:
    return create_pose_backend(config(assets))


@pytest.fixture(scope="module")
def dance_frames(dance: Path) -> np.ndarray:
    """Every 6th of the first 288 frames at the stored short side 640: (48, 1138, 640, 3)."""
    cap, frames = cv2.VideoCapture(str(dance)), []
    for i in range(288):
        ok, bgr = cap.read()
        assert ok, f"{dance}: frame {i} unreadable"
        if i % 6 == 0:
            small = cv2.resize(bgr, (640, 1138), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def arm(elbow: tuple[float, float], wrist: tuple[float, float]) -> np.ndarray:
    """(1, 133, 3): one person with a confident left elbow and wrist only."""
    person = np.zeros((1, 133, 3), np.float32)
    person[0, 7] = (*elbow, 0.9)
    person[0, 9] = (*wrist, 0.9)
    return person


@pytest.mark.parametrize("direction", [(0.0, -1.0), (1.0, 0.0), (0.6, 0.8)])
def test_hand_crop_is_beyond_the_wrist_with_the_fingers_up(direction: tuple[float, float]) -> None:
    d = np.array(direction)
    elbow, wrist = np.array([300.0, 300.0]), np.array([300.0, 300.0]) + 80 * d
    (h,) = hand_crops(arm(tuple(elbow), tuple(wrist)), 0, 0.3, 0.0)
    assert h.side == 0 and h.person == 0
    np.testing.assert_allclose(h.crop.centre, wrist + HAND_SHIFT * 80 * d)
    np.testing.assert_allclose(h.crop.scale, [HAND_CROP * 80] * 2)
    m = crop_matrix(h.crop, (224, 224))
    wrist_in, beyond = m @ [*wrist, 1.0], m @ [*(wrist + 40 * d), 1.0]
    assert abs(wrist_in[0] - 112) < 1e-6 and wrist_in[1] > 112  # wrist below the centre
    assert abs(beyond[0] - 112) < 1e-6 and beyond[1] < wrist_in[1]  # fingers towards the top


def test_size_and_wrist_gates() -> None:
    small = arm((300, 300), (300, 280))  # forearm 20 px: hand about 15 px
    assert hand_crops(small, 0, 0.3, 40.0) == []
    assert len(hand_crops(small, 0, 0.3, HAND_LENGTH * 20 - 1)) == 1
    unsure = arm((300, 300), (300, 200))
    unsure[0, 9, 2] = 0.2
    assert hand_crops(unsure, 0, 0.3, 0.0) == []


def test_presence_is_identity_1(assets: Path) -> None:
    """The assets README names ``Identity_2:0`` the presence; on a grey image and on noise it is
    ``Identity_1:0`` that says "no hand" (``Identity_2:0``, handedness, stays near 0.5)."""
    session = ort.InferenceSession(str(assets / "models" / "hand_landmark_full.onnx"))
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(0)
    for image in (np.full((1, 224, 224, 3), 0.5, np.float32), rng.random((1, 224, 224, 3))):
        out = dict(
            zip(names, session.run(None, {"input_1": image.astype(np.float32)}), strict=True)
        )
        assert out[PRESENCE].item() < 0.05  # what the backend reads as presence
        assert out["Identity_1:0"].item() < 0.05
        assert 0.3 < out["Identity_2:0"].item() < 0.7


def test_dance_hands_sit_on_the_wrist_of_their_side(
    backend: PoseBackend, dance_frames: np.ndarray
) -> None:
    people = backend.people(dance_frames)
    seen = {91: 0, 112: 0}
    for frame_people in people:
        for person in frame_people:
            for first, own, other in ((91, 9, 10), (112, 10, 9)):
                hand = person[first : first + 21]
                if not (hand[:, 2] > 0).any():
                    assert np.all(hand == 0)  # absent: all zero
                    continue
                seen[first] += 1
                d_own = np.hypot(*(hand[0, :2] - person[own, :2]))
                d_other = np.hypot(*(hand[0, :2] - person[other, :2]))
                assert d_own < d_other / 3, (first, d_own, d_other)
    assert seen[91] >= 8 and seen[112] >= 8, seen  # measured: see docs/pose.md


def test_small_and_unseen_hands_stay_at_zero(backend: PoseBackend, assets: Path) -> None:
    """COCO-WholeBody's annotated hands are 10-31 px: below the size gate, none is returned;
    a forearm on a plain grey frame gets no hand either (the model sees none)."""
    folder = assets / "images" / "coco_wholebody"
    data = json.loads((folder / "test_coco_wholebody.json").read_text())
    for image in data["images"]:
        bgr = cv2.imread(str(folder / image["file_name"]))
        assert bgr is not None, image["file_name"]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        (people,) = backend.people(rgb[None])
        assert len(people) and np.all(people[:, 91:, 2] == 0)
    grey = np.full((1, 480, 640, 3), 128, np.uint8)
    assert isinstance(backend, TopDownMoveNetBackend) and backend.hands is not None
    hands = backend.hands
    (person,) = hands.add_hands(grey, [arm((300, 400), (300, 250))])
    assert np.all(person[:, 91:] == 0)
