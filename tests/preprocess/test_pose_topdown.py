"""``pose.backend=topdown``: NanoDet / MultiPose boxes, MoveNet Thunder per crop (real models).

Known answers where they can be derived by hand (NanoDet and MultiPose box decoding, rotated
crops against OpenCV's inverse), the real models on the shared COCO-WholeBody images against
their annotations (COCO OKS written out here, not the benchmark's), and a planted person: a
COCO person pasted at a known place and scale into a larger frame must come back there.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from preprocess.config import PoseConfig, PreprocessConfig
from preprocess.pose import PoseBackend, create_pose_backend
from preprocess.pose.nanodet import NANODET_BINS, decode_nanodet, nanodet_priors
from preprocess.pose.thunder import carried_boxes, detector_views, multipose_boxes, unmatched
from preprocess.pose.topdown import Crop, OnnxModel, crop_matrix, crop_patch, crop_to_frame
from preprocess.runner import ConfigMismatchError, check_same_config
from shards.schema import with_format_version
from tests.preprocess.test_pose import oks


def topdown_config(assets: Path, **kw: object) -> PoseConfig:
    m = assets / "models"
    return PoseConfig(
        backend="topdown",
        model=str(m / "movenet_thunder.onnx"),
        detector=str(m / "nanodet_m_416.onnx"),
        multipose=str(m / "movenet_multipose.onnx"),
        device="cpu",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def topdown(assets: Path) -> PoseBackend:
    return create_pose_backend(topdown_config(assets))


def coco_people(assets: Path) -> list[tuple[np.ndarray, list[dict]]]:
    """(RGB image, annotations with >= 10 visible body points) of each COCO test image."""
    folder = assets / "images" / "coco_wholebody"
    data = json.loads((folder / "test_coco_wholebody.json").read_text())
    out = []
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        anns = [a for a in anns if (np.array(a["keypoints"][2:51:3]) > 0).sum() >= 10]
        bgr = cv2.imread(str(folder / image["file_name"]))
        assert bgr is not None, image["file_name"]
        out.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), anns))
    return out


# ---- known answers -------------------------------------------------------------------------


def test_nanodet_decoding_of_a_planted_cell() -> None:
    """One stride-16 cell with a confident person and one-hot side distributions."""
    hw = (416, 416)
    points, strides = nanodet_priors(hw)
    counts = [(416 // s) ** 2 for s in (8, 16, 32)]
    row, col = 10, 7
    a = counts[0] + row * 26 + col  # anchor index of the cell in the concatenation
    assert tuple(points[a]) == (7 * 16, 10 * 16) and strides[a] == 16
    scores = [np.zeros((1, n, 80), np.float32) for n in counts]
    dists = [np.full((1, n, 4 * NANODET_BINS), -20.0, np.float32) for n in counts]
    scores[1][0, row * 26 + col, 0] = 0.9
    for side, b in enumerate((2, 3, 4, 5)):  # left, top, right, bottom: bin b -> b * 16 px
        dists[1][0, row * 26 + col, side * NANODET_BINS + b] = 20.0
    outs = [dists[2], scores[0], dists[0], scores[2], dists[1], scores[1]]  # any order
    boxes, score = decode_nanodet(outs, hw, 0.5, 0.3, 0.5)
    expected = [(112 - 32) * 2, (160 - 48) * 2, (112 + 64) * 2, (160 + 80) * 2]  # / ratio
    np.testing.assert_allclose(boxes, [expected], atol=1e-3)
    np.testing.assert_allclose(score, [0.9])


def test_multipose_boxes_map_through_the_padded_input() -> None:
    height, width = 1920, 1080  # input 256: resized 256x144, padded 256x160
    out = np.zeros((1, 6, 56), np.float32)
    out[0, 0, 51:55] = [
        100 * 256 / 1920 / 256,  # ymin
        50 * 144 / 1080 / 160,  # xmin: normalised by the padded width
        900 * 256 / 1920 / 256,
        600 * 144 / 1080 / 160,
    ]
    out[0, 0, 55], out[0, 1, 55] = 0.8, 0.1
    boxes, scores = multipose_boxes(out, (height, width), 256, 0.2)
    np.testing.assert_allclose(boxes, [[50, 100, 600, 900]], atol=1e-2)
    np.testing.assert_allclose(scores, [0.8])


@pytest.mark.parametrize("angle", [0.0, 0.7, -2.0, np.pi])
def test_rotated_crop_inverse_is_opencvs(angle: float) -> None:
    up = np.array([np.sin(angle), -np.cos(angle)])  # crop "up" in the frame
    axes = np.array([[-up[1], up[0]], [-up[0], -up[1]]])
    crop = Crop(0, np.array([321.5, 170.25]), np.array([90.0, 90.0]), axes)
    m = crop_matrix(crop, (224, 224))
    inverse = cv2.invertAffineTransform(m)  # independent inverse
    pts = np.random.default_rng(0).uniform(0, 224, (1, 21, 2))
    expected = pts[0] @ inverse[:, :2].T + inverse[:, 2]
    np.testing.assert_allclose(crop_to_frame(pts, [crop], (224, 224))[0], expected, atol=1e-9)
    # the point one crop-quarter above the centre is a quarter crop side along "up"
    np.testing.assert_allclose(m @ [*(crop.centre + up * 22.5), 1.0], [112, 56], atol=1e-9)
    frame = np.zeros((400, 600, 3), np.uint8)
    x, y = (crop.centre + up * 22.5).round().astype(int)
    frame[y - 1 : y + 2, x - 1 : x + 2] = 255
    patch = crop_patch(frame, crop, (224, 224))
    py, px = np.unravel_index(patch[..., 0].argmax(), patch.shape[:2])
    assert abs(px - 112) <= 4 and abs(py - 56) <= 4


def test_detector_views_cover_the_long_side() -> None:
    frame = np.zeros((640, 853, 3), np.uint8)
    views = detector_views(frame, True)
    assert [(x, y, v.shape[:2]) for x, y, v in views] == [
        (0, 0, (640, 853)), (0, 0, (640, 640)), (213, 0, (640, 640))
    ]  # fmt: skip
    assert len(detector_views(frame, False)) == 1


def test_carried_box_spans_the_scored_points_padded_and_widened() -> None:
    """Points scored >= 0.1 span x 100..120, y 50..150 (a point at 0.05 lies far off and is
    left out): x 1.2 -> 24 x 120, widened to 0.6 x 120 = 72, about the centre (110, 100)."""
    person = np.zeros((1, 133, 3), np.float32)
    person[0, :3] = [[100, 50, 0.9], [120, 150, 0.2], [115, 90, 0.1]]
    person[0, 3] = [400, 400, 0.05]
    person[0, 20] = [0, 0, 0.9]  # a foot point: not a body point, not in the box
    np.testing.assert_allclose(carried_boxes(person), [[74, 40, 146, 160]], atol=1e-4)
    wide = person.copy()
    wide[0, :2, 0] = [0, 200]  # 240 x 120 wide: kept as it is
    np.testing.assert_allclose(carried_boxes(wide), [[-20, 40, 220, 160]], atol=1e-4)
    assert carried_boxes(np.zeros((0, 133, 3), np.float32)).shape == (0, 4)


def test_unmatched_keeps_the_carried_boxes_no_detection_covers() -> None:
    carried = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    detected = np.array([[1, 0, 11, 10]], np.float32)  # IoU 9/11 with the first
    np.testing.assert_array_equal(unmatched(carried, detected), carried[1:])
    np.testing.assert_array_equal(unmatched(carried, detected[:0]), carried)


# ---- real models ---------------------------------------------------------------------------


def test_recall_and_oks_on_the_coco_images(topdown: PoseBackend, assets: Path) -> None:
    """Floor of benchmarks/pose_quality.py's figures (measured: 12/12, mean OKS 0.90)."""
    found = []
    for image, anns in coco_people(assets):
        (people,) = topdown.people(image[None])
        gts = [np.array(a["keypoints"], np.float32).reshape(-1, 3) for a in anns]
        sim = np.array(
            [[oks(p[:17], g, a["area"]) for p in people] for g, a in zip(gts, anns, strict=True)]
        )
        rows, cols = linear_sum_assignment(-sim)
        found += [sim[r, c] for r, c in zip(rows, cols, strict=True) if sim[r, c] >= 0.5]
    assert len(found) == 12, found
    assert np.mean(found) >= 0.88, found
    assert all(people.shape[1:] == (133, 3) for people in topdown.people(image[None]))


def test_a_planted_person_comes_back_where_it_was_put(topdown: PoseBackend, assets: Path) -> None:
    """The single person of 000000000785, scaled by 0.7 and pasted at (700, 250) into a grey
    1280x720 frame: keypoints at the annotation's points mapped the same way, left and right
    where they belong."""
    image, (ann,) = coco_people(assets)[0]
    gt = np.array(ann["keypoints"], np.float32).reshape(-1, 3)[:17]
    x0, y0, w, h = (int(v) for v in ann["bbox"])
    patch = image[max(0, y0 - 20) : y0 + h + 20, max(0, x0 - 20) : x0 + w + 20]
    s, at = 0.7, np.array([700.0, 250.0])
    small = cv2.resize(patch, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[250 : 250 + small.shape[0], 700 : 700 + small.shape[1]] = small
    planted = gt.copy()
    planted[:, :2] = (gt[:, :2] - [max(0, x0 - 20), max(0, y0 - 20)] + 0.5) * s - 0.5 + at
    (people,) = topdown.people(frame[None])
    assert len(people) == 1, len(people)
    assert oks(people[0][:17], planted, ann["area"] * s * s) >= 0.8
    for left, right in ((5, 6), (11, 12), (13, 14), (15, 16)):
        d = np.hypot(*(people[0, [left, right], None, :2] - planted[None, [left, right], :2]).T)
        assert d[0, 0] < d[1, 0] and d[1, 1] < d[0, 1], (left, right)  # (pred, gt) distances


def test_a_walking_planted_person_is_followed_between_key_frames(
    assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Box propagation (``pose.detect_every=8``): an empty grey 960x540 frame, then the person
    of 000000000785 at 0.5 scale walking 10 px per frame to the right. The box models run on
    frames 0 and 8 (key frames) and 1 (after a frame without people) only; on the other
    frames Thunder, in the box carried from the frame before, finds the person at the
    planted points, left and right in place."""
    backend = create_pose_backend(topdown_config(assets, detect_every=8))
    calls: list[int] = []
    box_models = backend.frame_boxes  # type: ignore[attr-defined]
    monkeypatch.setattr(backend, "frame_boxes", lambda f: calls.append(1) or box_models(f))
    image, (ann,) = coco_people(assets)[0]
    gt = np.array(ann["keypoints"], np.float32).reshape(-1, 3)[:17]
    x0, y0, w, h = (int(v) for v in ann["bbox"])
    patch = image[max(0, y0 - 20) : y0 + h + 20, max(0, x0 - 20) : x0 + w + 20]
    s = 0.5
    small = cv2.resize(patch, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frames = np.full((9, 540, 960, 3), 128, np.uint8)
    planted = []
    for t in range(1, 9):
        x = 200 + 10 * t
        frames[t, 150 : 150 + small.shape[0], x : x + small.shape[1]] = small
        p = gt.copy()
        p[:, :2] = (gt[:, :2] - [max(0, x0 - 20), max(0, y0 - 20)] + 0.5) * s - 0.5 + [x, 150]
        planted.append(p)
    people = backend.people(frames)
    assert len(calls) == 3 and len(people[0]) == 0  # frames 0, 1 and 8 (a key frame)
    for t, (found, p) in enumerate(zip(people[1:], planted, strict=True), 1):
        assert len(found) == 1, (t, len(found))
        assert oks(found[0][:17], p, ann["area"] * s * s) >= 0.8, t
        d = np.hypot(*(found[0, [5, 6], None, :2] - p[None, [5, 6], :2]).T)
        assert d[0, 0] < d[1, 0] and d[1, 1] < d[0, 1], t  # shoulders on their sides


def test_crops_side_by_side_answer_as_one_at_a_time(assets: Path) -> None:
    """``OnnxModel(parallel=True)`` on 2 threads: Thunder's fixed batch of 1 runs 5 different
    crops on a thread pool; each answer is the one-at-a-time answer of its own crop, in order."""
    path = assets / "models" / "movenet_thunder.onnx"
    side = OnnxModel(path, "cpu", 2, (256, 256), "pose.device", "NHWC", parallel=True)
    alone = OnnxModel(path, "cpu", 1, (256, 256), "pose.device", "NHWC")
    assert side.pool is not None and alone.pool is None
    image, _ = coco_people(assets)[0]
    crops = np.stack([cv2.resize(image[:, i * 40 : i * 40 + 300], (256, 256)) for i in range(5)])
    (got,) = side.run(crops, 1)  # (5, 1, 17, 3)
    (want,) = alone.run(crops, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(want[0], want[4])  # the crops differ: an order mix-up would show


def test_a_frame_without_people_has_none(topdown: PoseBackend) -> None:
    frame = np.full((1, 360, 640, 3), 90, np.uint8)
    (people,) = topdown.people(frame)
    assert people.shape == (0, 133, 3)


def test_identity_names_every_file_and_resume_refuses_another_backend(
    topdown: PoseBackend, assets: Path, movenet_onnx: Path, tmp_path: Path
) -> None:
    ident = topdown.identity()
    assert ident["name"] == "topdown" and len(str(ident["sha256"])) == 64
    assert ident["model"] == str((assets / "models" / "movenet_thunder.onnx").resolve())
    for key in ("detector", "multipose"):
        assert len(ident[key]["sha256"]) == 64, key  # type: ignore[index]
    old = {"pose": create_pose_backend(PoseConfig(model=str(movenet_onnx))).identity()}
    (tmp_path / "backends.json").write_text(json.dumps(with_format_version(old)))
    cfg = PreprocessConfig()
    with pytest.raises(ConfigMismatchError, match=r"backends\.pose\.name: 'movenet' -> 'topdown'"):
        check_same_config(tmp_path, cfg, {"pose": ident})


def test_bad_box_sources_and_missing_files_are_named(assets: Path) -> None:
    with pytest.raises(ValueError, match=r"pose\.box_sources"):
        create_pose_backend(topdown_config(assets, box_sources=["yolo"]))
    with pytest.raises(FileNotFoundError, match=r"pose\.detector.*nanodet_m_416"):
        create_pose_backend(replace(topdown_config(assets), detector="/nope.onnx"))
