"""The COCO-WholeBody 133-keypoint layout (docs/design.md §3): the index of every body, foot, face
and hand point.

Every pose backend writes keypoints in this layout (``pose.npy`` of each sample); the skeleton
rasteriser (:mod:`preprocess.geometry.skeleton`), the pose-map renderer
(:mod:`preprocess.geometry.render`), tracking and inference read them through these names.
Arrays of keypoints are ``(..., 133, 3)`` float32 (x, y, score); score 0 means absent.
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 133
BODY = slice(0, 17)
"""COCO body order: nose, l/r eye, l/r ear, l/r shoulder, l/r elbow, l/r wrist, l/r hip,
l/r knee, l/r ankle (left before right)."""
FEET = slice(17, 23)
"""Left big toe, left small toe, left heel, right big toe, right small toe, right heel."""
FACE = slice(23, 91)
"""68 face landmarks (iBUG 300-W order)."""
LEFT_HAND = slice(91, 112)
"""21 points: wrist, then thumb, index, middle, ring, little finger (4 each, base to tip)."""
RIGHT_HAND = slice(112, 133)

NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16


def pad_to_wholebody(keypoints: np.ndarray) -> np.ndarray:
    """(..., K, 3) with K <= 133 -> (..., 133, 3) float32; points K..132 stay at zero."""
    k = keypoints.shape[-2]
    if k > NUM_KEYPOINTS:
        raise ValueError(f"got {k} keypoints per person; the whole-body layout has 133")
    out = np.zeros((*keypoints.shape[:-2], NUM_KEYPOINTS, 3), np.float32)
    out[..., :k, :] = keypoints
    return out
