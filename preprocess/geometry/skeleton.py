"""Skeleton rasterisation behind the dilation maps of :mod:`preprocess.geometry.masks`.

The skeleton (body, feet and hand limbs), keypoint validity, the frame -> map coordinate
mapping (pixel centre to pixel centre, as ``cv2.resize`` maps images) and the fast drawing of
many characters at once: each present character is drawn inside its crop (the bounding box of
its confident points grown by the reach of line and disc); the 1-pixel lines of all characters
of a clip are rasterised at once in NumPy; the crops are packed into one atlas image that
``cv2.dilate`` widens (line thickness) and dilates (disc) in one call each. Written by hand
because OpenCV draws one line per call (thousands of Python-level calls per clip), and
``cv2.line`` does not report which character owns a pixel.

Conventions are those of :mod:`preprocess.geometry`: keypoints ``(..., P, 133, 3)``, sizes
``(height, width)``. The drawn crops go next to :func:`preprocess.geometry.masks.dilation_masks`
(one frame) and :func:`preprocess.geometry.clip.clip_geometry` (a whole clip).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import cv2
import numpy as np

import preprocess.geometry.layout as L

Size = tuple[int, int]

_COORD_LIMIT = 1e5
"""Map coordinates are clipped to +-this (far-off garbage keypoints stay harmless)."""

BODY_LIMBS: tuple[tuple[int, int], ...] = (
    (L.L_ANKLE, L.L_KNEE), (L.L_KNEE, L.L_HIP), (L.R_ANKLE, L.R_KNEE), (L.R_KNEE, L.R_HIP),
    (L.L_HIP, L.R_HIP), (L.L_SHOULDER, L.L_HIP), (L.R_SHOULDER, L.R_HIP),
    (L.L_SHOULDER, L.R_SHOULDER), (L.L_SHOULDER, L.L_ELBOW), (L.R_SHOULDER, L.R_ELBOW),
    (L.L_ELBOW, L.L_WRIST), (L.R_ELBOW, L.R_WRIST), (L.L_EYE, L.R_EYE), (L.NOSE, L.L_EYE),
    (L.NOSE, L.R_EYE), (L.L_EYE, L.L_EAR), (L.R_EYE, L.R_EAR), (L.L_EAR, L.L_SHOULDER),
    (L.R_EAR, L.R_SHOULDER),
)  # fmt: skip
"""The 19 limbs of the COCO person skeleton (ears joined to shoulders, so the head is too)."""
FOOT_LIMBS: tuple[tuple[int, int], ...] = (
    (L.L_ANKLE, 17), (L.L_ANKLE, 18), (L.L_ANKLE, 19),
    (L.R_ANKLE, 20), (L.R_ANKLE, 21), (L.R_ANKLE, 22),
)  # fmt: skip
"""Each ankle to its big toe, small toe and heel (DWPose's foot edges)."""
_FINGER_EDGES = tuple(
    (0 if j == 0 else 4 * f + j, 4 * f + j + 1) for f in range(5) for j in range(4)
)
HAND_LIMBS: tuple[tuple[int, int], ...] = tuple(
    edge
    for wrist, base in ((L.L_WRIST, L.LEFT_HAND.start), (L.R_WRIST, L.RIGHT_HAND.start))
    for edge in ((wrist, base), *((base + a, base + b) for a, b in _FINGER_EDGES))
)
"""Per hand: body wrist -> hand wrist, then the 20 finger edges (wrist -> each finger base,
base -> tip along each finger)."""
SKELETON = np.array(BODY_LIMBS + FOOT_LIMBS + HAND_LIMBS, np.intp)  # (L, 2)
"""All limbs drawn into dilation maps. Face points (23..90) belong to no limb: confident face
points are drawn as dots, like every confident point without a confident limb."""
SKELETON.setflags(write=False)


def _limbs_of_points(skeleton: np.ndarray) -> np.ndarray:
    """(133, k) the limbs touching each point, padded with len(skeleton) (a never-drawn limb)."""
    touching = [np.flatnonzero((skeleton == i).any(1)) for i in range(L.NUM_KEYPOINTS)]
    table = np.full((L.NUM_KEYPOINTS, max(map(len, touching))), len(skeleton), np.intp)
    for i, limbs in enumerate(touching):
        table[i, : len(limbs)] = limbs
    return table


_LIMBS_OF_POINT = _limbs_of_points(SKELETON)  # (133, k)
_CHUNK = 1 << 14  # samples rasterised per batch (see _draw_thin)


def limb_thickness(out_size: Size, limb_width: float) -> int:
    """Line thickness in pixels: max(1, round(limb_width * min(h, w))), halves rounded up."""
    return max(1, math.floor(limb_width * min(out_size) + 0.5))


def disc_diameter(out_size: Size, dilation: float) -> int:
    """Dilation disc diameter D in pixels: max(1, round(dilation * min(h, w))), halves up."""
    return max(1, math.floor(dilation * min(out_size) + 0.5))


@functools.lru_cache(maxsize=64)
def disc_kernel(diameter: int) -> np.ndarray:
    """The disc of diameter D as an odd (2 * (D // 2) + 1)-square uint8 kernel: the pixel
    offsets within D / 2 of the centre, boundary included (D = 4: 13 pixels)."""
    r = diameter // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]  # (k, k), k odd
    kernel = (xx**2 + yy**2 <= (diameter / 2) ** 2).astype(np.uint8)
    kernel.setflags(write=False)
    return kernel


# --- keypoints ----------------------------------------------------------------------------


def check_keypoints(keypoints: np.ndarray, ndim: int | None = None) -> np.ndarray:
    """Validate (..., 133, 3) keypoints, with exactly ``ndim`` dimensions if given."""
    kps = np.asarray(keypoints)
    if kps.shape[-2:] != (L.NUM_KEYPOINTS, 3) or (ndim is not None and kps.ndim != ndim):
        want = {None: "(..., 133, 3)", 3: "(P, 133, 3)", 4: "(T, P, 133, 3)"}[ndim]
        raise ValueError(f"keypoints must be {want}, got shape {kps.shape}")
    return kps


def confident(points: np.ndarray, threshold: float) -> np.ndarray:
    """(..., K, 3) -> (..., K) bool: score > 0, score >= threshold, finite x and y."""
    score = points[..., 2]
    finite = np.isfinite(points[..., 0]) & np.isfinite(points[..., 1])
    return (score > 0) & (score >= threshold) & finite


def present_characters(
    keypoints: np.ndarray, keypoint_threshold: float, min_keypoints: int
) -> np.ndarray:
    """(..., P, 133, 3) -> (..., P) bool: at least ``min_keypoints`` confident body
    (COCO 0..16) keypoints."""
    kps = check_keypoints(keypoints)
    return confident(kps[..., L.BODY, :], keypoint_threshold).sum(-1) >= min_keypoints


def to_map(points: np.ndarray, frame_size: Size, out_size: Size) -> tuple[np.ndarray, np.ndarray]:
    """(..., K, 3) frame pixels -> map pixels x, y (..., K) float64, pixel centre to pixel
    centre (as cv2.resize maps images), clipped to +-_COORD_LIMIT."""
    (height, width), (h, w) = frame_size, out_size
    x = (points[..., 0].astype(np.float64) + 0.5) * w / width - 0.5
    y = (points[..., 1].astype(np.float64) + 0.5) * h / height - 0.5
    return np.clip(x, -_COORD_LIMIT, _COORD_LIMIT), np.clip(y, -_COORD_LIMIT, _COORD_LIMIT)


# --- drawing --------------------------------------------------------------------------


class Crops:
    """Drawn characters' masks inside their crops, packed side by side in one atlas image.

    A crop is the bounding box of a character's confident points grown by how far its line
    width and disc reach, within the map: nothing of the character lies outside it, and a
    pixel of the character on the map is always inside it. Crops are ``gap`` > that reach
    apart in the atlas, so a dilation of the atlas dilates every crop on its own.
    """

    def __init__(self, drawn: np.ndarray, start: np.ndarray, stop: np.ndarray, gap: int) -> None:
        self.drawn = drawn  # (D,) index of each drawn character
        self.start = start  # (D, 2) int64 crop x0, y0 in the map
        size = np.maximum(stop - start, 0)  # (D, 2) crop width, height
        place, shape = _shelf_pack(size, gap)  # (D, 2) crop x, y in the atlas
        self.atlas = np.zeros(shape, np.uint8)  # (H_atlas, W_atlas)
        self.views = [
            self.atlas[y : y + h, x : x + w]  # (ch, cw) view
            for (x, y), (w, h) in zip(place.tolist(), size.tolist(), strict=True)
        ]
        # flat atlas index of map pixel (0, 0) in each crop's frame: + y * W_atlas + x
        self.corner = (place[:, 1] - start[:, 1]) * shape[1] + place[:, 0] - start[:, 0]  # (D,)

    def regions(
        self, keys: np.ndarray
    ) -> Iterator[tuple[int, int, tuple[slice, slice], np.ndarray]]:
        """(i, keys[i], (rows, cols) of crop i in the map, its view) for each non-empty crop."""
        crops = zip(keys.tolist(), self.start.tolist(), self.views, strict=True)
        for i, (key, (x0, y0), view) in enumerate(crops):
            if view.size:
                yield i, key, (slice(y0, y0 + view.shape[0]), slice(x0, x0 + view.shape[1])), view

    def set_pixels(
        self,
        who: np.ndarray,
        px: np.ndarray,
        py: np.ndarray,
        size: Size,
        runs: np.ndarray | None = None,
    ) -> None:
        """Set map pixels (px, py) (K,) (whole-number floats) of drawn characters ``who``:
        one per pixel, or one per run of ``runs`` consecutive pixels. Pixels off the (h, w)
        map are dropped."""
        corner = self.corner[who] if runs is None else np.repeat(self.corner[who], runs)
        x, y = px.astype(np.int64), py.astype(np.int64)  # (K,) each
        keep = (x.view(np.uint64) < size[1]) & (y.view(np.uint64) < size[0])
        self.atlas.reshape(-1)[(corner + y * self.atlas.shape[1] + x)[keep]] = 1


def _shelf_pack(size: np.ndarray, gap: int) -> tuple[np.ndarray, Size]:
    """Place boxes (D, 2) (width, height) left to right in shelves of an atlas at least
    1024 wide, ``gap`` apart -> (D, 2) x, y of each box and the atlas (height, width)."""
    width = max(1024, int(size[:, 0].max(initial=0)))
    place = np.zeros_like(size)  # (D, 2)
    x = y = shelf = 0
    for i, (w, h) in enumerate(size.tolist()):
        if x + w > width:
            x, y, shelf = 0, y + shelf + gap, 0
        place[i] = x, y
        x, shelf = x + w + gap, max(shelf, h)
    return place, (max(1, y + shelf), width)


def _strokes(
    people: np.ndarray, frame_size: Size, out_size: Size, threshold: float, min_keypoints: int
) -> tuple[np.ndarray, ...]:
    """What each of N characters draws, vectorised over characters (x and y are kept apart:
    NumPy is slow on a trailing axis of length 2).

    Returns ``drawn`` (D,) indices of the present characters with a confident point, their
    map coordinates ``x``, ``y`` (D, 133) float64, ``limbs`` (D, L) bool (both ends
    confident), ``dots`` (D, 133) bool (confident, in no confident limb), and the bounding
    box ``lo``, ``hi`` (D, 2) float (x, y) of their confident points.
    """
    conf = confident(people, threshold)  # (N, 133)
    drawn = np.flatnonzero((conf[:, L.BODY].sum(-1) >= min_keypoints) & conf.any(-1))
    conf = conf[drawn]  # (D, 133)
    limbs = conf[:, SKELETON[:, 0]] & conf[:, SKELETON[:, 1]]  # (D, L)
    padded = np.concatenate([limbs, np.zeros((len(limbs), 1), bool)], 1)  # (D, L + 1)
    in_limb = np.zeros_like(conf)  # (D, 133); no matmul: BLAS threads would wake up
    for column in _LIMBS_OF_POINT.T:
        in_limb |= padded[:, column]
    dots = conf & ~in_limb  # (D, 133)
    x, y = to_map(people[drawn], frame_size, out_size)  # (D, 133) each
    lo = np.stack([np.where(conf, v, np.inf).min(-1) for v in (x, y)], -1)  # (D, 2)
    hi = np.stack([np.where(conf, v, -np.inf).max(-1) for v in (x, y)], -1)  # (D, 2)
    return drawn, x, y, limbs, dots, lo, hi


def _visible_steps(
    ax: np.ndarray, ay: np.ndarray, dx: np.ndarray, dy: np.ndarray, steps: np.ndarray, size: Size
) -> tuple[np.ndarray, np.ndarray]:
    """(S,) segments a + t d, t in [0, 1], sampled at t = k / steps -> the range of k,
    ``first`` .. ``last`` (S,) int64 (empty: last < first), that can round into the (h, w)
    map: the parameters inside [-1, w] x [-1, h] (Liang-Barsky; only for segments with an
    end outside that box), widened to whole steps."""
    h, w = size
    first, last = np.zeros(len(ax), np.int64), steps.astype(np.int64)
    out = np.flatnonzero(
        (np.minimum(ax, ax + dx) < -1) | (np.maximum(ax, ax + dx) > w)
        | (np.minimum(ay, ay + dy) < -1) | (np.maximum(ay, ay + dy) > h)
    )  # fmt: skip
    enter, leave = np.zeros(len(out)), np.ones(len(out))
    for start, delta, extent in ((ax[out], dx[out], w), (ay[out], dy[out], h)):
        with np.errstate(divide="ignore", invalid="ignore"):
            t_a, t_b = (-1 - start) / delta, (extent - start) / delta
        flat, inside = delta == 0, (start >= -1) & (start <= extent)
        t_in = np.where(flat, np.where(inside, 0.0, np.inf), np.minimum(t_a, t_b))
        t_out = np.where(flat, np.where(inside, 1.0, -np.inf), np.maximum(t_a, t_b))
        enter, leave = np.maximum(enter, t_in), np.minimum(leave, t_out)
    visible = enter <= leave
    first[out] = np.floor(np.where(visible, enter, 0.0) * steps[out])
    last[out] = np.where(visible, np.ceil(np.where(visible, leave, 0.0) * steps[out]), -1)
    return first, last


def _draw_thin(
    crops: Crops, x: np.ndarray, y: np.ndarray, limbs: np.ndarray, dots: np.ndarray, size: Size
) -> None:
    """Every confident limb and dot of every character as a 1-pixel line, all at once.

    A line from a to b (map coordinates) is the pixels floor((a + 1/2) + k * ((b - a) / n))
    for k = 0..n-1, n = ceil(max(|dx|, |dy|)), evaluated in that order in float64, and the
    pixel floor(b + 1/2): an 8-connected DDA line whose two ends are exact. A dot is the pixel
    floor(a + 1/2). Pixels off the map are dropped.
    """
    ax, ay = x[:, SKELETON[:, 0]][limbs], y[:, SKELETON[:, 0]][limbs]  # (S,) limb starts
    bx, by = x[:, SKELETON[:, 1]][limbs], y[:, SKELETON[:, 1]][limbs]  # (S,) limb ends
    who = np.nonzero(limbs)[0]  # (S,) character of each limb
    px, py = (np.floor(np.concatenate([v[dots], b]) + 0.5) for v, b in ((x, bx), (y, by)))
    crops.set_pixels(np.concatenate([np.nonzero(dots)[0], who]), px, py, size)  # dots, ends
    dx, dy = bx - ax, by - ay  # (S,)
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy)))  # (S,)
    first, last = _visible_steps(ax, ay, dx, dy, steps, size)
    last = np.minimum(last, steps.astype(np.int64) - 1)  # samples k < n; b is set above
    runs = np.maximum(last - first + 1, 0)  # (S,) samples per limb
    n = np.maximum(steps, 1)
    table = np.stack([ax + 0.5, ay + 0.5, dx / n, dy / n, first])  # (5, S) per limb
    # batches of about _CHUNK samples: small temporaries stay in malloc's heap, while large
    # ones are mapped afresh and page-faulted on every call (which costs more than the maths)
    ends = np.searchsorted(np.cumsum(runs), np.arange(_CHUNK, runs.sum(), _CHUNK)).tolist()
    for part in map(slice, [0, *ends], [*ends, len(runs)]):
        _draw_samples(crops, who[part], table[:, part], runs[part], size)


def _draw_samples(
    crops: Crops, who: np.ndarray, table: np.ndarray, runs: np.ndarray, size: Size
) -> None:
    """Samples k = first .. first + runs - 1 of limbs (a + 1/2) + k * (d / n): ``table``
    (5, S) holds ax + 1/2, ay + 1/2, dx / n, dy / n, first; ``who`` (S,) their characters."""
    x0, y0, sx, sy, first = table
    k = np.arange(runs.sum()) - np.repeat(np.cumsum(runs) - runs - first, runs)  # (K,) steps
    px = np.floor(np.repeat(x0, runs) + k * np.repeat(sx, runs))  # (K,)
    py = np.floor(np.repeat(y0, runs) + k * np.repeat(sy, runs))  # (K,)
    crops.set_pixels(who, px, py, size, runs)


def draw_crops(
    people: np.ndarray,
    frame_size: Size,
    out_size: Size,
    threshold: float,
    limb_width: float,
    dilation: float,
    min_keypoints: int,
) -> Crops:
    """The dilation maps of ``people`` (N, 133, 3), each drawn and dilated inside its crop:
    1-pixel lines and dots, widened to the line thickness by the disc of that diameter (a
    round-capped thick line), then dilated by the disc of :func:`disc_diameter`."""
    drawn, x, y, limbs, dots, lo, hi = _strokes(
        people, frame_size, out_size, threshold, min_keypoints
    )
    thickness = limb_thickness(out_size, limb_width)
    diameter = disc_diameter(out_size, dilation)
    radius = thickness // 2 + diameter // 2  # how far the two dilations reach
    start = np.maximum(np.floor(lo).astype(np.int64) - radius - 2, 0)  # (D, 2) crop x0, y0
    stop = np.minimum(np.ceil(hi).astype(np.int64) + radius + 3, out_size[::-1])  # x1, y1
    crops = Crops(drawn, start, stop, gap=radius + 1)
    _draw_thin(crops, x, y, limbs, dots, out_size)
    for disc in (thickness, diameter):  # the line's width, then the dilation; all crops at once
        if disc > 1:
            cv2.dilate(crops.atlas.copy(), disc_kernel(disc), dst=crops.atlas)
    return crops
