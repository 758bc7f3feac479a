"""OpenPose/DWPose-style pose maps: the pose guider's input (and the reference pose's).

Called by :func:`preprocess.geometry.canvas.build_guider_arrays` (training and inference
draw their pose maps here) and by anything that shows poses; NumPy + OpenCV only.

Conventions (after DWPose's ``draw_pose``, which ControlNet and the animation papers use):

- black background, RGB; the 133 whole-body points are reordered to OpenPose-18 here only
  (nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle,
  left hip/knee/ankle, right eye, left eye, right ear, left ear); the neck is the shoulders'
  midpoint, present when both shoulders are;
- body: 17 limbs as filled ellipses (half-width ``stickwidth``) in the 18 standard OpenPose
  colours, drawn limb by limb for all people, then the limb layer is dimmed to 60 %; joints
  on top as full-colour discs;
- hands: 20 edges per hand coloured by hue ``i / 20`` (HSV rainbow), joints as blue discs;
- face: 68 small white dots;
- feet (off by default, DWPose draws none): ankle -> big toe / small toe / heel, thin lines
  in the colour of that side's lower leg, drawn with the limbs (so dimmed too).

Sizes are DWPose's at a 512-pixel short side (stickwidth 4, joint radius 4, hand lines 2,
face radius 3) scaled linearly with the output's short side. Coordinates follow the project's
convention (integer x is the centre of pixel column x) and map pixel centre to pixel centre,
``x' = (x + 0.5) * w / W - 0.5``, exactly as :mod:`preprocess.geometry.masks` maps masks and as
``cv2.resize`` maps images, so pose maps line up with masks; they are drawn with sub-pixel
precision: a map rendered at 2x matches the resized 1x map up to rasterisation.
A point is drawn when its score is > 0 and >= ``threshold``; a limb when both ends are.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

import preprocess.geometry.layout as L

Color = tuple[int, int, int]

REFERENCE_SIDE = 512.0
STICKWIDTH, JOINT_RADIUS, HAND_LINE, HAND_RADIUS, FACE_RADIUS, FOOT_LINE = 4, 4, 2, 4, 3, 2
LIMB_DIM = 0.6
SHIFT = 4  # fixed-point bits of the sub-pixel coordinates given to OpenCV
NECK = -1
OPENPOSE18_FROM_WHOLEBODY = (
    L.NOSE, NECK, L.R_SHOULDER, L.R_ELBOW, L.R_WRIST, L.L_SHOULDER, L.L_ELBOW, L.L_WRIST,
    L.R_HIP, L.R_KNEE, L.R_ANKLE, L.L_HIP, L.L_KNEE, L.L_ANKLE, L.R_EYE, L.L_EYE, L.R_EAR,
    L.L_EAR,
)  # fmt: skip
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
FOOT_EDGES = (  # (ankle, foot point, colour of that side's knee -> ankle limb)
    (L.L_ANKLE, 17, 11), (L.L_ANKLE, 18, 11), (L.L_ANKLE, 19, 11),
    (L.R_ANKLE, 20, 8), (L.R_ANKLE, 21, 8), (L.R_ANKLE, 22, 8),
)  # fmt: skip
HAND_EDGES = tuple((0 if j == 0 else f * 4 + j, f * 4 + j + 1) for f in range(5) for j in range(4))


def _hue_color(hue: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(hue, 1.0, 1.0)
    return round(255 * r), round(255 * g), round(255 * b)


HAND_COLORS = tuple(_hue_color(i / len(HAND_EDGES)) for i in range(len(HAND_EDGES)))
HAND_JOINT_COLOR = (0, 0, 255)
FACE_COLOR = (255, 255, 255)


def to_openpose18(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """(P, 133, 3) -> (P, 18, 3) OpenPose order; neck = shoulders' midpoint (min score)."""
    idx = np.array([0 if i == NECK else i for i in OPENPOSE18_FROM_WHOLEBODY])
    out = keypoints[:, idx].copy()
    ls, rs = keypoints[:, L.L_SHOULDER], keypoints[:, L.R_SHOULDER]
    both = visible(ls[:, 2], threshold) & visible(rs[:, 2], threshold)
    out[:, 1, :2] = (ls[:, :2] + rs[:, :2]) / 2
    out[:, 1, 2] = np.where(both, np.minimum(ls[:, 2], rs[:, 2]), 0.0)
    return out


def visible(score: np.ndarray, threshold: float) -> np.ndarray:
    return (score > 0) & (score >= threshold)


def _fixed(xy: np.ndarray) -> np.ndarray:
    """Pixel coordinates (pixel i's centre at i) -> OpenCV fixed point for its ``shift``."""
    return np.round(np.clip(xy, -1e5, 1e5) * (1 << SHIFT)).astype(np.int32)


def _ellipse(
    canvas: np.ndarray, a: np.ndarray, b: np.ndarray, half_width: float, color: Color
) -> None:
    """Filled ellipse spanning segment a-b with the given half-width (an OpenPose limb)."""
    centre, delta = (a + b) / 2, b - a
    length = float(np.hypot(*delta))
    angle = np.arctan2(delta[1], delta[0])
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    local = np.stack([length / 2 * np.cos(t), half_width * np.sin(t)], 1)  # (72, 2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polygon = _fixed(local @ rot.T + centre)
    cv2.fillConvexPoly(canvas, polygon, color, shift=SHIFT)


def _disc(canvas: np.ndarray, xy: np.ndarray, radius: float, color: Color) -> None:
    centre = tuple(int(v) for v in _fixed(xy))
    cv2.circle(canvas, centre, max(1, round(radius * (1 << SHIFT))), color, -1, shift=SHIFT)


def _line(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, width: float, color: Color) -> None:
    p, q = (tuple(int(v) for v in _fixed(x)) for x in (a, b))
    cv2.line(canvas, p, q, color, max(1, round(width)), shift=SHIFT)


def _draw_body(
    canvas: np.ndarray, people: np.ndarray, s: float, threshold: float, feet: bool
) -> None:
    """Limbs (dimmed) then joints of every person; ``people`` (P, 133, 3) in output pixels."""
    body = to_openpose18(people, threshold)  # (P, 18, 3)
    vis = visible(body[..., 2], threshold)
    for i, (a, b) in enumerate(OPENPOSE_LIMBS):
        for p in np.flatnonzero(vis[:, a] & vis[:, b]):
            _ellipse(canvas, body[p, a, :2], body[p, b, :2], STICKWIDTH * s, OPENPOSE_COLORS[i])
    if feet:
        for ankle, toe, limb in FOOT_EDGES:
            ok = visible(people[:, ankle, 2], threshold) & visible(people[:, toe, 2], threshold)
            for p in np.flatnonzero(ok):
                start, end = people[p, ankle, :2], people[p, toe, :2]
                _line(canvas, start, end, FOOT_LINE * s, OPENPOSE_COLORS[limb])
    canvas[:] = (canvas * LIMB_DIM).astype(np.uint8)
    for i in range(len(OPENPOSE18_FROM_WHOLEBODY)):
        for p in np.flatnonzero(vis[:, i]):
            _disc(canvas, body[p, i, :2], JOINT_RADIUS * s, OPENPOSE_COLORS[i])


def _draw_hands(canvas: np.ndarray, people: np.ndarray, s: float, threshold: float) -> None:
    for hand in (L.LEFT_HAND, L.RIGHT_HAND):
        points = people[:, hand]  # (P, 21, 3)
        vis = visible(points[..., 2], threshold)
        for p in range(len(points)):
            for (a, b), color in zip(HAND_EDGES, HAND_COLORS, strict=True):
                if vis[p, a] and vis[p, b]:
                    _line(canvas, points[p, a, :2], points[p, b, :2], HAND_LINE * s, color)
            for i in np.flatnonzero(vis[p]):
                _disc(canvas, points[p, i, :2], HAND_RADIUS * s, HAND_JOINT_COLOR)


def _draw_face(canvas: np.ndarray, people: np.ndarray, s: float, threshold: float) -> None:
    points = people[:, L.FACE]  # (P, 68, 3)
    for p, i in zip(*np.nonzero(visible(points[..., 2], threshold)), strict=True):
        _disc(canvas, points[p, i, :2], FACE_RADIUS * s, FACE_COLOR)


def render_pose(
    keypoints: np.ndarray,
    frame_size: tuple[int, int],
    out_size: tuple[int, int],
    threshold: float = 0.3,
    *,
    feet: bool = False,
    hands: bool = True,
    face: bool = True,
) -> np.ndarray:
    """Pose map of one frame: (P, 133, 3) keypoints in ``frame_size`` (H, W) pixels ->
    (h, w, 3) uint8 RGB at ``out_size`` (h, w)."""
    h, w = out_size
    height, width = frame_size
    people = np.asarray(keypoints, np.float32).reshape(-1, L.NUM_KEYPOINTS, 3).copy()
    people[..., 0] = (people[..., 0] + 0.5) * (w / width) - 0.5  # frame px -> output px,
    people[..., 1] = (people[..., 1] + 0.5) * (h / height) - 0.5  # pixel centre to centre
    s = min(h, w) / REFERENCE_SIDE
    canvas = np.zeros((h, w, 3), np.uint8)  # (h, w, 3) RGB
    _draw_body(canvas, people, s, threshold, feet)
    if hands:
        _draw_hands(canvas, people, s, threshold)
    if face:
        _draw_face(canvas, people, s, threshold)
    return canvas


def render_pose_sequence(
    keypoints: np.ndarray,
    frame_size: tuple[int, int],
    out_size: tuple[int, int],
    threshold: float = 0.3,
    **options: bool,
) -> np.ndarray:
    """(T, P, 133, 3) -> (T, h, w, 3) uint8 RGB pose maps (see :func:`render_pose`)."""
    h, w = out_size
    maps = [render_pose(k, frame_size, out_size, threshold, **options) for k in keypoints]
    return np.stack(maps) if maps else np.zeros((0, h, w, 3), np.uint8)
