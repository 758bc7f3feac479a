"""Pose-map renderer (preprocess.geometry.render, OpenPose/DWPose conventions) on hand-built
skeletons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import preprocess.geometry.layout as L
from preprocess.geometry import GeometryConfig, dilation_masks
from preprocess.geometry.render import (
    HAND_COLORS,
    OPENPOSE_COLORS,
    OPENPOSE_LIMBS,
    render_pose,
    render_pose_sequence,
    to_openpose18,
)

SIZE = (400, 400)
BODY = np.array(
    [
        [0, -45], [-3, -48], [3, -48], [-7, -46], [7, -46],
        [-12, -32], [12, -32], [-18, -12], [18, -12], [-20, 6], [20, 6],
        [-8, 5], [8, 5], [-9, 28], [9, 28], [-9, 50], [9, 50],
    ],
    np.float32,
)  # fmt: skip


def skeleton(cx: float = 200, cy: float = 200, scale: float = 3.0) -> np.ndarray:
    """(133, 3): body only, confident."""
    kps = np.zeros((L.NUM_KEYPOINTS, 3), np.float32)
    kps[:17, :2] = BODY * scale + [cx, cy]
    kps[:17, 2] = 0.9
    return kps


def pixel(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The pixel containing point (x, y) (integer coordinates are pixel centres)."""
    return img[int(np.floor(xy[1] + 0.5)), int(np.floor(xy[0] + 0.5))]


def dimmed(color: tuple[int, int, int]) -> np.ndarray:
    return np.array(color) * 0.6


def segment_distance(shape: tuple[int, int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre to segment a-b."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]  # pixel centres
    p = np.stack([xs, ys], -1).astype(np.float64)
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def test_limbs_have_openpose_colours_at_their_midpoints() -> None:
    kps = skeleton()
    img = render_pose(kps[None], SIZE, SIZE)
    assert img.shape == (400, 400, 3) and img.dtype == np.uint8
    body = to_openpose18(kps[None], 0.3)[0]
    for limb in (0, 2, 3, 8, 11):  # neck-r_shoulder, r_upper/lower arm, r/l lower leg
        a, b = OPENPOSE_LIMBS[limb]
        mid = (body[a, :2] + body[b, :2]) / 2
        np.testing.assert_allclose(pixel(img, mid), dimmed(OPENPOSE_COLORS[limb]), atol=1)
    for joint in (2, 10, 13):  # joints on top, full colour
        np.testing.assert_array_equal(pixel(img, body[joint, :2]), OPENPOSE_COLORS[joint])


def test_pixels_are_drawn_only_near_the_skeleton() -> None:
    kps = skeleton()
    img = render_pose(kps[None], SIZE, SIZE)
    body = to_openpose18(kps[None], 0.3)[0]
    near = np.full(SIZE, np.inf)
    for a, b in OPENPOSE_LIMBS:
        near = np.minimum(near, segment_distance(SIZE, body[a, :2], body[b, :2]))
    drawn = np.asarray(img.any(-1))
    s = 400 / 512
    assert not drawn[near > 4 * s + 1.5].any()  # half-width 4 (limbs) / radius 4 (joints)
    assert drawn[near < 1].all()
    assert drawn.sum() > 1000


def test_absent_or_weak_points_draw_nothing() -> None:
    assert not render_pose(np.zeros((2, 133, 3), np.float32), SIZE, SIZE).any()
    assert not render_pose(np.zeros((0, 133, 3), np.float32), SIZE, SIZE).any()
    kps = skeleton()
    kps[L.R_ELBOW, 2] = 0.2  # below the default threshold 0.3
    elbow, shoulder = kps[L.R_ELBOW, :2], kps[L.R_SHOULDER, :2]
    img = render_pose(kps[None], SIZE, SIZE)
    assert not pixel(img, elbow).any() and not pixel(img, (elbow + shoulder) / 2).any()
    np.testing.assert_array_equal(pixel(img, shoulder), OPENPOSE_COLORS[2])
    assert pixel(render_pose(kps[None], SIZE, SIZE, threshold=0.1), elbow).any()
    lone = np.zeros((1, 133, 3), np.float32)
    lone[0, L.NOSE] = [100, 100, 0.25]
    assert not render_pose(lone, SIZE, SIZE).any()


def test_neck_is_the_shoulders_midpoint_and_needs_both() -> None:
    kps = skeleton()
    body = to_openpose18(kps[None], 0.3)[0]
    np.testing.assert_allclose(body[1, :2], (kps[L.L_SHOULDER, :2] + kps[L.R_SHOULDER, :2]) / 2)
    np.testing.assert_array_equal(
        body[[0, 2, 5, 8, 11, 14, 15, 16, 17], :2], kps[[0, 6, 5, 12, 11, 2, 1, 4, 3], :2]
    )
    kps[L.L_SHOULDER, 2] = 0.0
    assert to_openpose18(kps[None], 0.3)[0, 1, 2] == 0
    img = render_pose(kps[None], SIZE, SIZE)
    neck_to_r_hip = (body[1, :2] + kps[L.R_HIP, :2]) / 2
    assert not pixel(img, neck_to_r_hip).any()


def test_rendering_at_twice_the_size_matches_the_upsampled_map() -> None:
    people = np.stack([skeleton(150, 200), skeleton(280, 210, scale=2.5)])
    people[0, L.FACE] = [[140 + 3 * (i % 8), 50 + 3 * (i // 8), 0.9] for i in range(68)]
    small = render_pose(people, SIZE, (200, 200))
    big = render_pose(people, SIZE, (400, 400))
    up = cv2.resize(small, (400, 400), interpolation=cv2.INTER_NEAREST)
    a, b = np.asarray(up.any(-1)), np.asarray(big.any(-1))
    iou = (a & b).sum() / (a | b).sum()
    assert iou > 0.8, iou
    grow = np.ones((3, 3), np.uint8)  # within one pixel of each other: rasterisation only
    assert b[cv2.dilate(a.astype(np.uint8), grow) == 0].sum() <= 0.01 * b.sum()
    assert a[cv2.dilate(b.astype(np.uint8), grow) == 0].sum() <= 0.01 * a.sum()
    both = a & b
    same = (np.abs(up.astype(int) - big.astype(int)).max(-1) <= 2)[both].mean()
    assert same > 0.85, same
    ratio = big.any(-1).sum() / small.any(-1).sum()
    assert 3.3 < ratio < 4.7, ratio  # drawn area scales with the output area


def test_coordinates_are_scaled_from_frame_to_output_size() -> None:
    kps = np.zeros((1, 133, 3), np.float32)
    # frame (H=1000, W=2000) -> output (250, 500), pixel centre to pixel centre:
    # x' = (1001.5 + 0.5) * 0.25 - 0.5 = 250, y' = (601.5 + 0.5) * 0.25 - 0.5 = 150
    kps[0, L.FACE.start] = [1001.5, 601.5, 1.0]
    img = render_pose(kps, (1000, 2000), (250, 500))
    ys, xs = np.nonzero(img.any(-1))
    assert len(xs) > 0
    np.testing.assert_allclose([xs.mean(), ys.mean()], [250.0, 150.0], atol=1e-6)  # symmetric dot
    np.testing.assert_array_equal(img[150, 250], [255, 255, 255])  # face dots are white


def test_hands_are_rainbow_edges_with_blue_joints() -> None:
    kps = np.zeros((1, 133, 3), np.float32)
    hand = np.array(
        [[100, 200]] + [[100 + 40 * (1 + j), 120 + 40 * f] for f in range(5) for j in range(4)]
    )
    kps[0, L.LEFT_HAND, :2] = hand
    kps[0, L.LEFT_HAND, 2] = 0.9
    img = render_pose(kps, SIZE, SIZE)
    for edge, (a, b) in [(1, (1, 2)), (6, (6, 7)), (19, (19, 20))]:  # finger edges
        np.testing.assert_array_equal(pixel(img, (hand[a] + hand[b]) / 2), HAND_COLORS[edge])
    np.testing.assert_array_equal(HAND_COLORS[0], [255, 0, 0])  # hue 0 -> red
    np.testing.assert_array_equal(pixel(img, hand[0]), [0, 0, 255])
    assert not render_pose(kps, SIZE, SIZE, hands=False).any()
    right = np.zeros_like(kps)
    right[0, L.RIGHT_HAND] = kps[0, L.LEFT_HAND]
    np.testing.assert_array_equal(render_pose(right, SIZE, SIZE), img)


def test_face_toggle_and_feet_are_optional() -> None:
    kps = skeleton()
    kps[L.FACE, :2] = kps[L.NOSE, :2] + [0, 4]
    kps[L.FACE, 2] = 0.9
    assert (
        render_pose(kps[None], SIZE, SIZE).sum()
        > render_pose(kps[None], SIZE, SIZE, face=False).sum()
    )
    kps[17] = [kps[L.L_ANKLE, 0] - 30, kps[L.L_ANKLE, 1] + 5, 0.9]  # left big toe
    toe_mid = (kps[17, :2] + kps[L.L_ANKLE, :2]) / 2
    assert not pixel(render_pose(kps[None], SIZE, SIZE), toe_mid).any()  # DWPose: no feet
    with_feet = render_pose(kps[None], SIZE, SIZE, feet=True)
    np.testing.assert_allclose(pixel(with_feet, toe_mid), dimmed(OPENPOSE_COLORS[11]), atol=1)


def test_sequence_stacks_frames() -> None:
    seq = np.stack([skeleton(150 + 10 * t)[None] for t in range(3)])  # (T, P, 133, 3)
    maps = render_pose_sequence(seq, SIZE, (128, 96))
    assert maps.shape == (3, 128, 96, 3) and maps.dtype == np.uint8
    for t in range(3):
        np.testing.assert_array_equal(maps[t], render_pose(seq[t], SIZE, (128, 96)))
    assert not np.array_equal(maps[0], maps[2])
    empty = render_pose_sequence(np.zeros((0, 2, 133, 3), np.float32), SIZE, (64, 32))
    assert empty.shape == (0, 64, 32, 3)


@pytest.mark.parametrize("out", [(64, 64), (720, 1280)])
def test_all_people_are_drawn(out: tuple[int, int]) -> None:
    people = np.stack([skeleton(100), skeleton(300)])
    img = render_pose(people, SIZE, out)
    half = out[1] // 2
    assert img[:, :half].any() and img[:, half:].any()
    np.testing.assert_array_equal(
        img[:, :half].any(-1), render_pose(people[:1], SIZE, out)[:, :half].any(-1)
    )


@pytest.mark.parametrize("out", [(100, 100), (400, 400), (133, 217)])
def test_pose_map_lies_inside_the_geometry_mask_of_the_same_limbs(out: tuple[int, int]) -> None:
    """Pose maps and dilation masks use one coordinate mapping: an arm (shoulder, elbow,
    wrist: limbs both skeletons share) drawn as a pose map lies inside its dilation mask."""
    geo = GeometryConfig()
    arm = np.zeros((1, L.NUM_KEYPOINTS, 3), np.float32)
    arm[0, [L.L_SHOULDER, L.L_ELBOW, L.L_WRIST]] = [
        [100, 80, 0.9],
        [180, 150, 0.9],
        [300, 170, 0.9],
    ]
    pose = render_pose(arm, SIZE, out, hands=False, face=False).any(-1)
    mask = dilation_masks(
        arm,
        SIZE,
        out,
        keypoint_threshold=geo.keypoint_threshold,
        limb_width=geo.limb_width,
        dilation=geo.dilation,
        min_keypoints=geo.min_keypoints,
    )[0]
    assert pose.sum() > 0
    assert not (pose & ~mask).any()
