"""DWPose's pre- and post-processing against rtmlib, component by component, on real frames.

rtmlib (PyPI, pinned in the Makefile's dev setup, installed ``--no-deps``) runs DWPose's two
ONNX files with its own numpy/OpenCV code: YOLOX letterbox, head decoding and NMS; RTMPose's
box -> centre/scale -> affine crop, ImageNet normalisation and SimCC decoding. Both sides run
the same stand-in ONNX files (:mod:`preprocess.standins`: random conv nets whose outputs
depend on every pixel and channel, so a wrong crop, channel order or normalisation changes
them) on real frames: vtest.avi, dance_single.mp4 and a COCO-WholeBody image with its
annotated person boxes.

rtmlib feeds both models the array it is given; the project feeds YOLOX BGR and RTMPose RGB
on purpose (docs/extractors.md), so each rtmlib component gets the array in that order.
Known differences, on purpose: rtmlib's NMS counts "+1" pixel areas (ours is OpenCV's; no box
pair here sits where that matters); rtmlib's keypoint score is the mean of the two SimCC maxima
where mmpose and DWPose take the smaller (ours: the smaller, clipped at 0, checked against
mmpose's formula); rtmlib builds the crop warp from float32 points (a 1e-3 px difference that
can move a pixel by one grey level).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from rtmlib import YOLOX, RTMPose
from rtmlib.tools.object_detection.post_processings import multiclass_nms
from rtmlib.version import __version__ as rtmlib_version

from preprocess.config import PoseConfig
from preprocess.pose import create_pose_backend
from preprocess.pose.dwpose import crop_input, decode_simcc, decode_yolox
from preprocess.pose.topdown import box_to_crop, letterbox
from preprocess.standins import write_dwpose_onnx, write_yolox_onnx
from tests.media import read_frames

DET_HW = (640, 640)
POSE_HW = (384, 288)  # (h, w); rtmlib takes (w, h)
SCORE, NMS = 0.3, 0.45
COCO_IMAGE = "000000197388.jpg"
RTMLIB = "0.0.16"  # the Makefile's pin; its differences from ours are listed above


def test_rtmlib_is_the_pinned_version() -> None:
    assert rtmlib_version == RTMLIB, "run `make setup` (it installs rtmlib --no-deps)"


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dwpose_parity")
    return {
        "detector": write_yolox_onnx(d / "yolox_l.onnx"),
        "pose": write_dwpose_onnx(d / "dw-ll_ucoco_384.onnx"),
    }


@pytest.fixture(scope="module")
def frames(vtest: Path, dance: Path, assets: Path) -> dict[str, np.ndarray]:
    """Real RGB frames of three shapes (landscape, portrait, a photo)."""
    coco = cv2.imread(str(assets / "images" / "coco_wholebody" / COCO_IMAGE))
    assert coco is not None
    return {
        "vtest": read_frames(vtest, 1)[0],
        "dance": read_frames(dance, 1)[0],
        "coco": cv2.cvtColor(coco, cv2.COLOR_BGR2RGB),
    }


@pytest.fixture(scope="module")
def coco_boxes(assets: Path) -> np.ndarray:
    """(N, 4) xyxy annotated person boxes of the COCO image."""
    ann = json.loads(
        (assets / "images" / "coco_wholebody" / "test_coco_wholebody.json").read_text()
    )
    (image,) = [i for i in ann["images"] if i["file_name"] == COCO_IMAGE]
    xywh = np.array([a["bbox"] for a in ann["annotations"] if a["image_id"] == image["id"]])
    assert len(xywh) >= 2
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def rtmlib_detector(onnx_files: dict[str, Path]) -> YOLOX:
    return YOLOX(
        str(onnx_files["detector"]), DET_HW, det_mode="multiclass", nms_thr=NMS, score_thr=SCORE
    )


def rtmlib_pose(onnx_files: dict[str, Path]) -> RTMPose:
    return RTMPose(str(onnx_files["pose"]), (POSE_HW[1], POSE_HW[0]))


def test_letterbox_matches_rtmlib(onnx_files: dict[str, Path], frames: dict[str, np.ndarray]):
    det = rtmlib_detector(onnx_files)
    for name, rgb in frames.items():
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        want, want_ratio = det.preprocess(bgr)  # (640, 640, 3) uint8
        ours, ratio = letterbox(bgr, DET_HW)  # (3, 640, 640) float32
        assert ratio == pytest.approx(want_ratio), name
        np.testing.assert_array_equal(ours, want.transpose(2, 0, 1).astype(np.float32), name)


def iou(box: np.ndarray, others: np.ndarray, plus: float = 0.0) -> np.ndarray:
    """IoU of a box (4,) with boxes (N, 4), xyxy; ``plus=1``: rtmlib's "+1" pixel areas."""
    lo, hi = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.maximum(hi - lo + plus, 0), 1)
    area = np.prod(box[2:] - box[:2] + plus)
    return inter / (area + np.prod(others[:, 2:] - others[:, :2] + plus, 1) - inter)


def rtmlib_people(det: YOLOX, raw: np.ndarray, ratio: float) -> dict[str, np.ndarray]:
    """rtmlib's decoding of a raw head (1, A, 85): its candidates (class 0 above the score),
    its own NMS result, and OpenCV's NMS (ours) on its candidates; boxes xyxy frame px."""
    decoded = raw.copy()  # rtmlib's postprocess decodes in place: centres, sizes in input px
    final, classes = det.postprocess(decoded, ratio)
    cxcy, wh = decoded[0, :, :2], decoded[0, :, 2:4]
    xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1) / ratio  # (A, 4)
    dets, _ = multiclass_nms(xyxy, decoded[0, :, 4:5] * decoded[0, :, 5:], NMS, SCORE)
    dets = np.zeros((0, 6)) if dets is None else dets  # (M, 6) x1 y1 x2 y2 score class
    people = dets[dets[:, 5] == 0]
    np.testing.assert_allclose(np.reshape(final, (-1, 4))[np.reshape(classes, -1) == 0],
                               people[:, :4])  # fmt: skip
    score = decoded[0, :, 4] * decoded[0, :, 5]  # (A,) objectness x person
    cand = score > SCORE
    boxes, score = xyxy[cand], score[cand]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), SCORE, NMS), int)
    keep = keep.reshape(-1)[np.argsort(-score[keep.reshape(-1)], kind="stable")]
    return {"rtmlib": people, "candidates": boxes, "opencv": boxes[keep], "score": score[keep]}


def test_yolox_decoding_and_nms_match_rtmlib(
    onnx_files: dict[str, Path], frames: dict[str, np.ndarray]
) -> None:
    """rtmlib's head decoding, then OpenCV's NMS: our boxes and scores exactly. rtmlib's own
    NMS keeps the same boxes except where its "+1" areas move a pair's IoU across 0.45."""
    det = rtmlib_detector(onnx_files)
    session = ort.InferenceSession(str(onnx_files["detector"]))
    kept = candidates = 0
    for name, rgb in frames.items():
        img, ratio = letterbox(np.ascontiguousarray(rgb[..., ::-1]), DET_HW)
        raw = session.run(None, {"images": img[None]})[0]  # (1, 8400, 85)
        boxes, scores = decode_yolox(raw[0].copy(), DET_HW, ratio, SCORE, NMS)
        ref = rtmlib_people(det, raw, ratio)
        np.testing.assert_allclose(boxes, ref["opencv"], rtol=1e-5, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(scores, ref["score"], rtol=1e-5, err_msg=name)
        theirs = ref["rtmlib"][:, :4]
        for box in [*boxes, *theirs]:  # kept by one NMS only: a straddling pair explains it
            if (np.abs(boxes - box).max(1) < 1e-3).any() != (
                np.abs(theirs - box).max(1) < 1e-3
            ).any():
                ours_iou, plus_iou = iou(box, boxes), iou(box, boxes, plus=1.0)
                assert ((ours_iou <= NMS) & (plus_iou > NMS)).any(), (name, box)
        kept += len(boxes)
        candidates += len(ref["candidates"])
    assert 10 <= kept < candidates  # boxes kept, and NMS suppressed some


def test_rtmpose_crop_and_normalisation_match_rtmlib(
    onnx_files: dict[str, Path], frames: dict[str, np.ndarray], coco_boxes: np.ndarray
) -> None:
    """Box -> centre and size (x1.25, fitted to 288:384) -> affine warp -> RGB normalised by
    ImageNet mean/std: our crop equals rtmlib's up to its float32 warp matrix (at most one grey
    level on a few pixels)."""
    pose = rtmlib_pose(onnx_files)
    rgb = frames["coco"]
    h, w = rgb.shape[:2]
    extra = np.array([[-40, 10, 120, 300], [w - 90, h - 60, w + 30, h + 20], [5, 200, 400, 260]])
    for box in np.concatenate([coco_boxes, extra]).astype(np.float64):
        want, centre, scale = pose.preprocess(rgb, box)  # (384, 288, 3) float64
        crop = box_to_crop(0, box, POSE_HW)
        np.testing.assert_allclose(crop.centre, centre, rtol=1e-12)
        np.testing.assert_allclose(crop.scale, scale, rtol=1e-12)
        ours = crop_input(rgb, crop, POSE_HW)  # (3, 384, 288) float32
        diff = np.abs(ours - want.transpose(2, 0, 1))
        assert diff.max() < 1.01 / 57.12 + 1e-4, box  # one grey level at most
        assert (diff > 1e-4).mean() < 1e-3, box


def test_simcc_decoding_matches_rtmlib(
    onnx_files: dict[str, Path], frames: dict[str, np.ndarray], coco_boxes: np.ndarray
) -> None:
    """SimCC argmax / 2 through the inverse crop affine, as rtmlib; the score is mmpose's and
    DWPose's smaller of the two maxima, clipped at 0 (rtmlib: their mean)."""
    pose = rtmlib_pose(onnx_files)
    rgb = frames["coco"]
    crops = [box_to_crop(0, box, POSE_HW) for box in coco_boxes]
    batch = np.stack([crop_input(rgb, c, POSE_HW) for c in crops])  # (M, 3, 384, 288)
    session = ort.InferenceSession(str(onnx_files["pose"]))
    simcc_x, simcc_y = session.run(["simcc_x", "simcc_y"], {"input": batch})
    for shift in (0.0, -0.6):  # -0.6: about half the maxima negative
        sx, sy = simcc_x + shift, simcc_y + shift
        ours = decode_simcc(sx, sy, crops, POSE_HW)  # (M, 133, 3)
        for i, c in enumerate(crops):
            xy, mean_score = pose.postprocess([sx[i : i + 1], sy[i : i + 1]], c.centre, c.scale)
            valid = mean_score[0] > 0  # rtmlib drops locations where its score is <= 0
            np.testing.assert_allclose(ours[i, valid, :2], xy[0, valid], rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(mean_score[0], (sx[i].max(-1) + sy[i].max(-1)) / 2)
        smaller = np.minimum(sx.max(-1), sy.max(-1))  # mmpose's get_simcc_maximum
        np.testing.assert_allclose(ours[..., 2], np.maximum(smaller, 0.0), rtol=1e-6)
        assert (smaller < 0).any() == (shift < 0)


def test_dwpose_backend_matches_the_rtmlib_chain(onnx_files: dict[str, Path], vtest: Path) -> None:
    """The whole backend on real frames against rtmlib's YOLOX (given BGR) then RTMPose (given
    RGB) on the same files: the same people in the same order, the same keypoints (a few may
    land on another SimCC bin: rtmlib's float32 warp moves some crop pixels by a grey level)."""
    cfg = PoseConfig(
        backend="dwpose",
        detector=str(onnx_files["detector"]),
        model=str(onnx_files["pose"]),
        person_score=SCORE,
        detector_nms=NMS,
        device="cpu",
    )
    rgb = read_frames(vtest, 3)[[0, 2]]  # frames where rtmlib's NMS keeps what OpenCV's does
    ours = create_pose_backend(cfg).detect_frames(rgb)
    det, pose = rtmlib_detector(onnx_files), rtmlib_pose(onnx_files)
    for frame, people in zip(rgb, ours, strict=True):
        img, ratio = det.preprocess(np.ascontiguousarray(frame[..., ::-1]))
        premise = rtmlib_people(det, det.inference(img)[0], ratio)
        np.testing.assert_allclose(premise["rtmlib"][:, :4], premise["opencv"], rtol=1e-6)
        boxes, classes = det(np.ascontiguousarray(frame[..., ::-1]))
        keypoints, mean_score = pose(frame, boxes[classes == 0])  # (M, 133, 2), (M, 133)
        assert people.shape == (len(keypoints), 133, 3) and len(people) >= 3
        close = (np.abs(people[..., :2] - keypoints) <= 1e-3).all(-1)  # (M, 133)
        assert close.mean() > 0.995, close.mean()
        score = people[..., 2]  # the smaller SimCC maximum: below rtmlib's mean of the two
        assert (score <= np.maximum(mean_score, 0) + 1e-4).all()
        assert (score < mean_score - 1e-3).mean() > 0.5
