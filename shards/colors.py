"""Colours of the data viewers (``shards.show`` contact sheets and MP4s, ``shards.browse``
thumbnails): one colour per track, per depth rank, and the Middlebury flow colour wheel.

Pure numpy on stored values; the viewers draw with them and nothing else does.
"""

from __future__ import annotations

import numpy as np

from preprocess.geometry.order import order_values

TRACK_COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127),
)  # fmt: skip
"""RGB colour of track p: ``TRACK_COLORS[p % 10]`` (matplotlib's tab10)."""
RANK_COLORS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25))
"""RGB colour of depth rank 0 (front), 1, 2 and 3+ (the levels K-1.. share one value)."""


def _color_wheel() -> np.ndarray:
    """(55, 3) float64 RGB of the Middlebury wheel (Baker et al., ``colorcode.cpp``): red ->
    yellow 15 steps, yellow -> green 6, green -> cyan 4, cyan -> blue 11, blue -> magenta 13,
    magenta -> red 6; in each segment one channel is full and another ramps up or down."""
    segments = (  # (steps, full channel, ramping channel, ramps up)
        (15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True),
        (11, 2, 1, False), (13, 2, 0, True), (6, 0, 2, False),
    )  # fmt: skip
    rows = []
    for steps, full, ramp, up in segments:
        for i in range(steps):
            c = np.zeros(3)
            c[full] = 255
            step = np.floor(255 * i / steps)
            c[ramp] = step if up else 255 - step
            rows.append(c)
    return np.array(rows)


WHEEL = _color_wheel()


def flow_to_color(flow: np.ndarray, max_radius: float) -> np.ndarray:
    """(h, w, 2) flow (u right, v down) -> (h, w, 3) uint8 RGB in the Middlebury colour code,
    magnitudes divided by ``max_radius`` (> 1 after division: darkened to 75 %)."""
    u, v = (flow[..., i].astype(np.float64) / max(max_radius, 1e-9) for i in (0, 1))
    rad = np.hypot(u, v)  # (h, w)
    angle = np.arctan2(-v, -u) / np.pi  # (h, w) in [-1, 1]
    fk = (angle + 1) / 2 * (len(WHEEL) - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % len(WHEEL)
    f = (fk - k0)[..., None]
    col = ((1 - f) * WHEEL[k0] + f * WHEEL[k1]) / 255  # (h, w, 3)
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.floor(255 * col).astype(np.uint8)


def order_to_color(order: np.ndarray, levels: int) -> np.ndarray:
    """(h, w) stored depth-order values -> (h, w, 3) uint8 RGB coloured by rank
    (``RANK_COLORS``); background (0) black, a value no rank has white."""
    out = np.full((*order.shape, 3), 255, np.uint8)
    out[order == 0] = 0
    for rank, value in enumerate(order_values(np.arange(levels), levels)):
        out[order == value] = RANK_COLORS[min(rank, len(RANK_COLORS) - 1)]
    return out
