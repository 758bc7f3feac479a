"""The pure geometry layer (docs/design.md §3): keypoints in, masks, ranks, order maps, flow inputs,
pose maps and clip statistics out.

NumPy, OpenCV and SciPy only; it imports nothing of the project but ``shards`` and itself (no
extractor, no model, no torch), so preprocessing, training, inference and the data viewers
all share it: preprocessing stores what :func:`clip_geometry` computes at the map
resolution, training and inference draw the guider inputs on their canvas with the same
functions (:mod:`.canvas`), so masks and order maps come from one procedure everywhere.
Decisions and defaults: docs/geometry.md.

==============  ===========================================================================
module          holds
==============  ===========================================================================
``config``      :class:`GeometryConfig` (the ``geometry`` section of every config)
``layout``      the COCO-WholeBody 133-keypoint layout
``skeleton``    the skeleton, keypoint validity and the fast rasteriser of dilation maps
``masks``       map sizes, dilation masks, union / overlap / exclusive regions, occlusion
``order``       nearness (depth map or feet), ranks, depth-order levels and maps
``flow``        background flow, its magnitude, the flow guider input
``clip``        :func:`clip_geometry`: a whole clip's maps and statistics (:class:`ClipGeometry`)
``render``      OpenPose/DWPose-style pose maps
``canvas``      the training/inference canvas (:class:`~.canvas.Crop`) and the guider arrays
==============  ===========================================================================

Conventions: keypoints ``(..., P, 133, 3)`` (x, y, score) in the COCO-WholeBody layout, x/y in
``frame_size`` pixels; a keypoint is *confident* when ``score > 0``, ``score >= threshold`` and
its x, y are finite. Sizes are ``(height, width)``; maps are ``(h, w)``.
"""

from preprocess.geometry.clip import ClipGeometry, clip_geometry
from preprocess.geometry.config import GeometryConfig
from preprocess.geometry.flow import (
    background_flow,
    background_flow_magnitude,
    flow_guider_input,
)
from preprocess.geometry.masks import (
    dilation_masks,
    exclusive_regions,
    map_size,
    occlusion_rate,
    overlap_count,
    union_mask,
)
from preprocess.geometry.order import (
    depth_order_map,
    nearness_from_depth,
    nearness_from_feet,
    order_level,
    order_value,
    ranks_from_nearness,
)
from preprocess.geometry.skeleton import (
    Crops,
    Size,
    check_keypoints,
    confident,
    draw_crops,
    present_characters,
)

__all__ = [
    "ClipGeometry",
    "Crops",
    "GeometryConfig",
    "Size",
    "background_flow",
    "background_flow_magnitude",
    "check_keypoints",
    "clip_geometry",
    "confident",
    "depth_order_map",
    "dilation_masks",
    "draw_crops",
    "exclusive_regions",
    "flow_guider_input",
    "map_size",
    "nearness_from_depth",
    "nearness_from_feet",
    "occlusion_rate",
    "order_level",
    "order_value",
    "overlap_count",
    "present_characters",
    "ranks_from_nearness",
    "union_mask",
]
