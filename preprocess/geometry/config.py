"""The geometry parameters (docs/design.md §3): how masks, ranks, order maps and flow inputs are made.

Written by preprocessing into ``OUT/config.yaml`` (section ``geometry``); training reads them
back from the dataset and exports them in the model folder (``ModelConfig.geometry``), so
inference draws the same maps. Defaults are discussed in docs/geometry.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GeometryConfig:
    """Parameters of docs/design.md §3. Training and inference read them back from the dataset."""

    map_downscale: int = 4
    """Maps (flow, masks, depth order) are stored at the stored resolution divided by this."""
    keypoint_threshold: float = 0.3
    """Keypoints with a lower score are not drawn into skeletons."""
    min_keypoints: int = 3
    """A character counts as present in a frame with at least this many confident body
    (COCO 0..16) keypoints."""
    limb_width: float = 0.01
    """Skeleton line thickness as a fraction of the target frame's short side."""
    dilation: float = 0.05
    """Diameter of the dilation disc as a fraction of the target frame's short side."""
    order_levels: int = 4
    """K in the depth-order levels L_r = (K - r) / K (r < K), 1 / K beyond."""
    flow_scale: float = 10.0
    """s in the flow guider input (1 - M) * F / s + M: pixels per frame mapped to 1.0."""
