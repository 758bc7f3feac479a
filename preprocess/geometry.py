"""DESIGN §3 geometry as pure array functions: skeletal dilation masks, exclusive regions,
ranks, depth-order maps, background flow, occlusion and the per-clip statistics.

No I/O, no models: NumPy and OpenCV on arrays. Preprocessing (at the map resolution),
training (at 896x640) and inference call the same functions with keypoints and a target
resolution, so masks and order maps come from one procedure everywhere. Decisions and
defaults are written up in docs/geometry.md.

Conventions: keypoints ``(..., P, 133, 3)`` (x, y, score) in the COCO-WholeBody layout, x/y in
``frame_size`` pixels; a keypoint is *confident* when ``score > 0``, ``score >= threshold`` and
its x, y are finite. Sizes are ``(height, width)``; maps are ``(h, w)``.

Speed (timed by ``benchmarks/``, never by tests). Only present characters are drawn, each
inside its crop (the bounding box of its confident points grown by the reach of line and disc);
the 1-pixel lines of all characters of a clip are rasterised at once in NumPy; the crops are
packed into one atlas image that ``cv2.dilate`` widens (line thickness) and dilates (disc) in
one call each; statistics are vectorised over frames; nothing calls BLAS (its idle threads
spin). Measured on
a shared 2-core EPYC VM: ``clip_geometry`` of a 64-frame clip at a 192x144 map costs about
0.10-0.15 ms per frame with 4-5 characters and 0.22 ms with 6 whole-body characters.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator

import cv2
import numpy as np

from preprocess.clip import ClipGeometry
from preprocess.config import GeometryConfig
from preprocess.pose import layout as L

logger = logging.getLogger(__name__)

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
_FEET_BODY = slice(0, L.FEET.stop)  # body and feet: the points the feet heuristic looks at


# --- sizes ------------------------------------------------------------------------------


def map_size(height: int, width: int, downscale: int) -> Size:
    """(h, w) of the maps of a ``height`` x ``width`` frame: each side // downscale, >= 1."""
    if downscale < 1:
        raise ValueError(f"map downscale must be >= 1, got {downscale}")
    return max(1, height // downscale), max(1, width // downscale)


def limb_thickness(out_size: Size, limb_width: float) -> int:
    """Line thickness in pixels: max(1, round(limb_width * min(h, w))), halves rounded up."""
    return max(1, math.floor(limb_width * min(out_size) + 0.5))


def disc_diameter(out_size: Size, dilation: float) -> int:
    """Dilation disc diameter D in pixels: max(1, round(dilation * min(h, w))), halves up."""
    return max(1, math.floor(dilation * min(out_size) + 0.5))


@functools.lru_cache(maxsize=64)
def _disc_kernel(diameter: int) -> np.ndarray:
    """The disc of diameter D as an odd (2 * (D // 2) + 1)-square uint8 kernel: the pixel
    offsets within D / 2 of the centre, boundary included (D = 4: 13 pixels)."""
    r = diameter // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]  # (k, k), k odd
    kernel = (xx**2 + yy**2 <= (diameter / 2) ** 2).astype(np.uint8)
    kernel.setflags(write=False)
    return kernel


# --- characters and masks ---------------------------------------------------------------


def _check_keypoints(keypoints: np.ndarray, ndim: int | None = None) -> np.ndarray:
    """Validate (..., 133, 3) keypoints, with exactly ``ndim`` dimensions if given."""
    kps = np.asarray(keypoints)
    if kps.shape[-2:] != (L.NUM_KEYPOINTS, 3) or (ndim is not None and kps.ndim != ndim):
        want = {None: "(..., 133, 3)", 3: "(P, 133, 3)", 4: "(T, P, 133, 3)"}[ndim]
        raise ValueError(f"keypoints must be {want}, got shape {kps.shape}")
    return kps


def _confident(points: np.ndarray, threshold: float) -> np.ndarray:
    """(..., K, 3) -> (..., K) bool: score > 0, score >= threshold, finite x and y."""
    score = points[..., 2]
    finite = np.isfinite(points[..., 0]) & np.isfinite(points[..., 1])
    return (score > 0) & (score >= threshold) & finite


def present_characters(
    keypoints: np.ndarray, keypoint_threshold: float, min_keypoints: int
) -> np.ndarray:
    """(..., P, 133, 3) -> (..., P) bool: at least ``min_keypoints`` confident body
    (COCO 0..16) keypoints."""
    kps = _check_keypoints(keypoints)
    return _confident(kps[..., L.BODY, :], keypoint_threshold).sum(-1) >= min_keypoints


def _to_map(points: np.ndarray, frame_size: Size, out_size: Size) -> tuple[np.ndarray, np.ndarray]:
    """(..., K, 3) frame pixels -> map pixels x, y (..., K) float64, pixel centre to pixel
    centre (as cv2.resize maps images), clipped to +-_COORD_LIMIT."""
    (height, width), (h, w) = frame_size, out_size
    x = (points[..., 0].astype(np.float64) + 0.5) * w / width - 0.5
    y = (points[..., 1].astype(np.float64) + 0.5) * h / height - 0.5
    return np.clip(x, -_COORD_LIMIT, _COORD_LIMIT), np.clip(y, -_COORD_LIMIT, _COORD_LIMIT)


def dilation_masks(
    keypoints: np.ndarray,
    frame_size: Size,
    out_size: Size,
    *,
    keypoint_threshold: float,
    limb_width: float,
    dilation: float,
    min_keypoints: int,
) -> np.ndarray:
    """Skeletal dilation maps a_j of one frame (DESIGN §3): (P, 133, 3) keypoints in
    ``frame_size`` pixels -> (P, h, w) bool at ``out_size``.

    Limbs of :data:`SKELETON` whose two ends are confident are drawn as lines of
    :func:`limb_thickness` (a 1-pixel DDA line dilated by the disc of that diameter: round
    caps); confident points without such a limb are dots (zero-length lines: a disc of that
    diameter); the drawing is then dilated with the disc of :func:`disc_diameter`. Characters
    that are not :func:`present_characters` get an empty mask.
    """
    people = _check_keypoints(keypoints, ndim=3)
    crops = _draw_crops(
        people, frame_size, out_size, keypoint_threshold, limb_width, dilation, min_keypoints
    )
    masks = np.zeros((len(people), *out_size), bool)  # (P, h, w)
    for _, n, region, view in crops.regions(crops.drawn):
        masks[(n, *region)] = view
    return masks


class _Crops:
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
    conf = _confident(people, threshold)  # (N, 133)
    drawn = np.flatnonzero((conf[:, L.BODY].sum(-1) >= min_keypoints) & conf.any(-1))
    conf = conf[drawn]  # (D, 133)
    limbs = conf[:, SKELETON[:, 0]] & conf[:, SKELETON[:, 1]]  # (D, L)
    padded = np.concatenate([limbs, np.zeros((len(limbs), 1), bool)], 1)  # (D, L + 1)
    in_limb = np.zeros_like(conf)  # (D, 133); no matmul: BLAS threads would wake up
    for column in _LIMBS_OF_POINT.T:
        in_limb |= padded[:, column]
    dots = conf & ~in_limb  # (D, 133)
    x, y = _to_map(people[drawn], frame_size, out_size)  # (D, 133) each
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
    crops: _Crops, x: np.ndarray, y: np.ndarray, limbs: np.ndarray, dots: np.ndarray, size: Size
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
    crops: _Crops, who: np.ndarray, table: np.ndarray, runs: np.ndarray, size: Size
) -> None:
    """Samples k = first .. first + runs - 1 of limbs (a + 1/2) + k * (d / n): ``table``
    (5, S) holds ax + 1/2, ay + 1/2, dx / n, dy / n, first; ``who`` (S,) their characters."""
    x0, y0, sx, sy, first = table
    k = np.arange(runs.sum()) - np.repeat(np.cumsum(runs) - runs - first, runs)  # (K,) steps
    px = np.floor(np.repeat(x0, runs) + k * np.repeat(sx, runs))  # (K,)
    py = np.floor(np.repeat(y0, runs) + k * np.repeat(sy, runs))  # (K,)
    crops.set_pixels(who, px, py, size, runs)


def _draw_crops(
    people: np.ndarray,
    frame_size: Size,
    out_size: Size,
    threshold: float,
    limb_width: float,
    dilation: float,
    min_keypoints: int,
) -> _Crops:
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
    crops = _Crops(drawn, start, stop, gap=radius + 1)
    _draw_thin(crops, x, y, limbs, dots, out_size)
    for disc in (thickness, diameter):  # the line's width, then the dilation; all crops at once
        if disc > 1:
            cv2.dilate(crops.atlas.copy(), _disc_kernel(disc), dst=crops.atlas)
    return crops


# --- regions ----------------------------------------------------------------------------


def union_mask(masks: np.ndarray) -> np.ndarray:
    """(..., P, h, w) bool -> (..., h, w) bool: M = union of the characters' regions."""
    return np.logical_or.reduce(np.asarray(masks, bool), axis=-3)


def overlap_count(masks: np.ndarray) -> np.ndarray:
    """(..., P, h, w) bool -> (..., h, w) int32: how many characters cover each pixel."""
    return np.asarray(masks, bool).sum(axis=-3, dtype=np.int32)


def exclusive_regions(masks: np.ndarray) -> np.ndarray:
    """(..., P, h, w) bool -> (..., P, h, w) bool: m_j = a_j minus every pixel that any
    other character covers (the pixels of a_j covered by exactly one character)."""
    masks = np.asarray(masks, bool)
    return masks & (overlap_count(masks) == 1)[..., None, :, :]


def _nonzero_per_map(maps: np.ndarray) -> np.ndarray:
    """(..., h, w) -> (...,) int64 nonzero pixels per map (a per-map ``count_nonzero`` is
    much faster than NumPy's axis reduction)."""
    flat = maps.reshape(-1, *maps.shape[-2:])  # (N, h, w)
    return np.array([np.count_nonzero(m) for m in flat], np.int64).reshape(maps.shape[:-2])


def _occlusion_from_areas(
    union: np.ndarray, shared: np.ndarray, n_present: np.ndarray
) -> np.ndarray:
    """(...,) union and shared areas, characters -> (...,) float64 rate, NaN if undefined."""
    defined = (np.asarray(n_present) >= 2) & (union > 0)
    return np.where(defined, shared / np.maximum(union, 1), np.nan)


def occlusion_rate(masks: np.ndarray, present: np.ndarray) -> float | None:
    """(P, h, w), (P,) -> area covered by >= 2 present characters / area of their union;
    None with fewer than 2 present characters or an empty union."""
    present = np.asarray(present, bool)
    count = overlap_count(np.asarray(masks, bool)[present])  # (h, w)
    union, shared = _nonzero_per_map(count), _nonzero_per_map(count >= 2)
    rate = float(_occlusion_from_areas(union, shared, np.array(present.sum())))
    return None if math.isnan(rate) else rate


# --- nearness and ranks -----------------------------------------------------------------


def nearness_from_depth(depth: np.ndarray, masks: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(h, w) inverse depth, (P, h, w) regions, (P,) -> (P,) float64 mean depth over each
    present character's exclusive region (its full region if that is empty; NaN if both are
    empty, and for absent characters). Absent characters' regions are ignored."""
    present = np.asarray(present, bool)
    regions = np.ascontiguousarray(masks, bool)  # (P, h, w)
    alone = (overlap_count(regions[present]) == 1).view(np.uint8)  # (h, w)
    depth = np.ascontiguousarray(depth, np.float32)  # (h, w)
    nearness = np.full(len(regions), np.nan)
    for p in np.flatnonzero(present):
        full = regions[p].view(np.uint8)  # (h, w)
        for mask in (cv2.bitwise_and(full, alone), full):  # m_j, then a_j
            if cv2.countNonZero(mask):
                nearness[p] = cv2.mean(depth, mask=mask)[0]
                break
    return nearness


def nearness_from_feet(
    keypoints: np.ndarray, present: np.ndarray, keypoint_threshold: float
) -> np.ndarray:
    """(..., P, 133, 3), (..., P) -> (..., P) float64: the weightless ground-plane heuristic.

    Nearness is the image y of a character's lowest confident body or foot keypoint (0..22):
    on a floor seen from above the horizon, a lower contact point is nearer the camera.
    Face and hand points are ignored (a raised hand says nothing about distance). NaN for
    absent characters.
    """
    points = _check_keypoints(keypoints)[..., _FEET_BODY, :]  # (..., P, 23, 3)
    conf = _confident(points, keypoint_threshold)  # (..., P, 23)
    lowest = np.where(conf, points[..., 1], -np.inf).max(-1).astype(np.float64)  # (..., P)
    return np.where(np.asarray(present, bool) & conf.any(-1), lowest, np.nan)


def ranks_from_nearness(nearness: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(..., P), (..., P) -> (..., P) int8 ranks: 0 = nearest = largest nearness, -1 absent.

    Ties go to the lower track index; present characters with NaN nearness (no region)
    come after all others.
    """
    near = np.asarray(nearness, np.float64)
    present = np.asarray(present, bool)
    if near.shape[-1] > np.iinfo(np.int8).max:
        raise ValueError(f"at most 127 tracks can be ranked, got {near.shape[-1]}")
    missing = np.isnan(near)
    index = np.broadcast_to(np.arange(near.shape[-1]), near.shape)
    order = np.lexsort((index, np.where(missing, 0.0, -near), missing, ~present), axis=-1)
    ranks = np.argsort(order, axis=-1)  # the inverse permutation: position in the order
    return np.where(present, ranks, -1).astype(np.int8)


# --- depth order ------------------------------------------------------------------------


def _check_levels(levels: int) -> None:
    if levels < 1:
        raise ValueError(f"order levels K must be >= 1, got {levels}")


def order_level(rank: int, levels: int) -> float:
    """L_r = (K - r) / K for 0 <= r < K, 1 / K beyond; 0.0 for r < 0 (absent: not painted)."""
    _check_levels(levels)
    if rank < 0:
        return 0.0
    return (levels - rank) / levels if rank < levels else 1 / levels


def _order_values(ranks: np.ndarray, levels: int) -> np.ndarray:
    """(...) int ranks -> (...) uint8 round(255 * L_r), halves up, in exact integer maths."""
    _check_levels(levels)
    r = np.asarray(ranks, np.int64)
    k = np.where(r < levels, levels - r, 1)  # L_r = k / K
    return np.where(r < 0, 0, (510 * k + levels) // (2 * levels)).astype(np.uint8)


def order_value(rank: int, levels: int) -> int:
    """The stored uint8 of a rank: round(255 * L_r), halves up (K = 4: 255, 191, 128, 64)."""
    return int(_order_values(np.array(rank), levels))


def depth_order_map(masks: np.ndarray, ranks: np.ndarray, levels: int) -> np.ndarray:
    """(..., P, h, w) full regions, (..., P) ranks -> (..., h, w) uint8 depth-order map O.

    Painting every region with its level from the farthest rank to the nearest leaves each
    pixel with the level of the nearest covering character; levels never increase with rank,
    so that is the largest level among the covering characters, which is what is computed.
    Background and characters of rank -1 stay 0.
    """
    masks = np.asarray(masks, bool)
    values = _order_values(ranks, levels)  # (..., P)
    out = np.zeros(masks.shape[:-3] + masks.shape[-2:], np.uint8)  # (..., h, w)
    for p in range(masks.shape[-3]):
        np.maximum(out, masks[..., p, :, :] * values[..., p, None, None], out=out)
    return out


# --- flow -------------------------------------------------------------------------------


def background_flow(flow: np.ndarray, union: np.ndarray) -> np.ndarray:
    """B = (1 - M) * F: (..., h, w, 2) flow with the characters' union (..., h, w) zeroed."""
    flow = np.asarray(flow)
    return np.where(np.asarray(union, bool)[..., None], 0, flow).astype(flow.dtype, copy=False)


def _background_magnitudes(
    flow: np.ndarray, background: np.ndarray, n_background: np.ndarray
) -> np.ndarray:
    """(..., h, w, 2) flow, (..., h, w) bool background (M = 0) and its (...,) areas ->
    (...,) float64 mean |F|_2 over the background, NaN where it is empty. Flow is expected
    finite (NaN under the mask would still poison its frame)."""
    f = np.ascontiguousarray(flow, np.float32)  # (..., h, w, 2)
    magnitude = np.abs(f.view(np.complex64)[..., 0])  # (..., h, w)
    magnitude *= background
    total = magnitude.sum(-1).sum(-1, dtype=np.float64)  # rows in float32, then float64
    return np.where(n_background > 0, total / np.maximum(n_background, 1), np.nan)


def background_flow_magnitude(flow: np.ndarray, union: np.ndarray) -> float:
    """b = mean over pixels with M = 0 of |F|_2 for (h, w, 2) flow; NaN if M covers all."""
    background = ~np.asarray(union, bool)
    return float(_background_magnitudes(flow, background, _nonzero_per_map(background)))


def flow_guider_input(flow: np.ndarray, union: np.ndarray, scale: float) -> np.ndarray:
    """(1 - M) * F / s + M * 1.0 per channel: (..., h, w, 2) float32."""
    scaled = np.asarray(flow, np.float32) / np.float32(scale)
    return np.where(np.asarray(union, bool)[..., None], np.float32(1.0), scaled)


# --- the clip ---------------------------------------------------------------------------


def _clip_map_size(
    keypoints: np.ndarray,
    flow: np.ndarray,
    frame_size: Size,
    cfg: GeometryConfig,
    depth: np.ndarray | None,
) -> Size:
    t = keypoints.shape[0]
    h, w = map_size(*frame_size, cfg.map_downscale)
    if flow.shape != (t, h, w, 2):
        raise ValueError(
            f"flow has shape {flow.shape}, expected {(t, h, w, 2)}: {t} frames at the map "
            f"size of {frame_size} frames / geometry.map_downscale={cfg.map_downscale}"
        )
    if depth is not None and depth.shape != (t, h, w):
        raise ValueError(f"depth has shape {depth.shape}, expected {(t, h, w)}")
    return h, w


def _accumulate(
    ufunc: np.ufunc,
    crops: _Crops,
    frame: np.ndarray,
    shape: tuple[int, int, int],
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Combine the drawn characters' crops (times ``values`` (D,) if given) into (T, h, w)
    uint8 maps with ``ufunc``: add gives overlap counts, maximum the depth-order map."""
    out = np.zeros(shape, np.uint8)  # (T, h, w)
    for i, t, region, view in crops.regions(frame):
        target = out[(t, *region)]  # (ch, cw) view
        ufunc(target, view if values is None else view * values[i], out=target)
    return out


def _crop_depth_nearness(
    crops: _Crops, frame: np.ndarray, count: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """(D,) mean depth of each drawn character over its exclusive region (pixels it alone
    covers), or its full region if that is empty: :func:`nearness_from_depth` per crop."""
    nearness = np.full(len(crops.drawn), np.nan)
    for i, t, region, view in crops.regions(frame):
        alone = (count[(t, *region)] == 1).view(np.uint8)  # (ch, cw)
        for mask in (cv2.bitwise_and(view, alone), view):  # m_j, then a_j
            if cv2.countNonZero(mask):
                nearness[i] = cv2.mean(np.ascontiguousarray(depth[(t, *region)]), mask=mask)[0]
                break
    return nearness


def _pose_score_mean(keypoints: np.ndarray, present: np.ndarray, threshold: float) -> float | None:
    """Mean over frames and present characters of their confident body points' mean score."""
    body = keypoints[..., L.BODY, :]  # (T, P, 17, 3)
    conf = _confident(body, threshold) & present[..., None]  # (T, P, 17)
    n = conf.sum(-1)  # (T, P)
    sums = np.where(conf, body[..., 2], 0).sum(-1, dtype=np.float64)  # (T, P)
    means = sums[n > 0] / n[n > 0]
    return float(means.mean()) if means.size else None


def _mean_max_p95(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean, max and 95th percentile of the non-NaN values (Nones when there are none)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return None, None, None
    return float(v.mean()), float(v.max()), float(np.percentile(v, 95))


def _clip_stats(
    keypoints: np.ndarray,
    flow: np.ndarray,
    count: np.ndarray,
    present: np.ndarray,
    threshold: float,
) -> dict[str, float | int | None]:
    """The clips-table statistics from per-frame overlap counts (T, h, w) and presence."""
    n = present.sum(-1)  # (T,) characters per frame
    union = _nonzero_per_map(count)  # (T,) union areas
    n_background = count.shape[-2] * count.shape[-1] - union[1:]
    bg_mean, _, bg_p95 = _mean_max_p95(
        _background_magnitudes(flow[1:], count[1:] == 0, n_background)
    )
    shared = np.zeros_like(union)  # (T,) areas covered twice, needed where n >= 2 only
    for t in np.flatnonzero(n >= 2):
        shared[t] = np.count_nonzero(count[t] >= 2)
    occ_mean, occ_max, _ = _mean_max_p95(_occlusion_from_areas(union, shared, n))
    return {
        "bg_flow_mean": bg_mean,
        "bg_flow_p95": bg_p95,
        "occlusion_rate_mean": occ_mean,
        "occlusion_rate_max": occ_max,
        "characters_max": int(n.max(initial=0)),
        "characters_mode": int(np.bincount(n).argmax()) if n.size else 0,
        "multi_character_frac": float((n >= 2).mean()) if n.size else 0.0,
        "pose_score_mean": _pose_score_mean(keypoints, present, threshold),
    }


def clip_geometry(
    keypoints: np.ndarray,
    flow: np.ndarray,
    frame_size: Size,
    cfg: GeometryConfig,
    depth: np.ndarray | None = None,
) -> ClipGeometry:
    """Masks, ranks, depth order and statistics of one clip (DESIGN §3).

    ``keypoints`` (T, P, 133, 3) in stored pixels of ``frame_size`` (H, W); ``flow``
    (T, h, w, 2) backward flow in stored pixels per frame at the map resolution
    ``map_size(H, W, cfg.map_downscale)``, F_0 not counted; ``depth`` (T, h, w) relative
    inverse depth, or None to rank by :func:`nearness_from_feet`.
    """
    keypoints = _check_keypoints(keypoints, ndim=4)
    flow = np.asarray(flow)
    out_size = _clip_map_size(keypoints, flow, frame_size, cfg, depth)
    thr, shape = cfg.keypoint_threshold, (len(keypoints), *out_size)
    present = present_characters(keypoints, thr, cfg.min_keypoints)  # (T, P)
    frame, track = np.nonzero(present)  # (N,) the present characters, frame by frame
    crops = _draw_crops(
        keypoints[frame, track], frame_size, out_size, thr, cfg.limb_width, cfg.dilation,
        cfg.min_keypoints,
    )  # fmt: skip
    frame, track = frame[crops.drawn], track[crops.drawn]  # (D,) the drawn ones
    count = _accumulate(np.add, crops, frame, shape)  # (T, h, w) overlap counts
    if depth is None:
        nearness = nearness_from_feet(keypoints, present, thr)  # (T, P)
    else:
        nearness = np.full(present.shape, np.nan)  # (T, P); NaN: present but not drawn
        depth = np.asarray(depth, np.float32)  # (T, h, w)
        nearness[frame, track] = _crop_depth_nearness(crops, frame, count, depth)
    ranks = ranks_from_nearness(nearness, present)  # (T, P)
    values = _order_values(ranks[frame, track], cfg.order_levels)  # (D,)
    order = _accumulate(np.maximum, crops, frame, shape, values)  # (T, h, w)
    stats = _clip_stats(keypoints, flow, count, present, thr)
    logger.debug("clip geometry: %s tracks, maps %s: %s", present.shape, out_size, stats)
    return ClipGeometry(mask=count > 0, order=order, ranks=ranks, stats=stats)
