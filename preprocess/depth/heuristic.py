"""``depth.backend=heuristic``: no depth map; characters are ranked by their feet.

The geometry layer then ranks with ``preprocess.geometry.nearness_from_feet`` (the lower a
character's lowest confident keypoint in the image, the nearer), and shards carry no ``depth``
field. No model and no GPU path: ``depth.device`` may be ``auto`` or ``cpu`` only.
"""

from __future__ import annotations

import numpy as np

from preprocess.depth.base import DEPTH_BACKENDS, DepthBackend


@DEPTH_BACKENDS.register("heuristic")
class HeuristicDepth(DepthBackend):
    """No depth map; characters are ranked by the height of their feet in the frame."""

    name = "heuristic"

    def clip_depth(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray | None:
        return None

    def model_file(self) -> str:
        return ""  # no weights

    def identity_extras(self) -> dict[str, object]:
        return {"rule": "lowest confident keypoint is nearest"}
