"""Stand-ins for the paper's extractors' weight files: tiny models with the public files'
structure, names and I/O, random, planted or probing weights. They let the real loading and
inference code run without the real weights: in the tests, in ``benchmarks/extractors.py``, and
for plumbing runs (``python -m preprocess`` with ``pose.detector=...`` etc. pointed at them).
Their outputs mean nothing; never ship them as weights.

Each writer takes a path, writes the file (or folder) there and returns it:

- :func:`write_yolox_onnx`: DWPose's detector I/O (``images`` ``[B, 3, h, w]`` -> ``output``
  ``[B, A, 85]``, the raw YOLOX head): a random conv net of the whole frame, optionally over
  boxes planted by the caller (:func:`planted_head`); :func:`write_yolox_probe_onnx`: one box
  scored by the mean of one input channel (known answers for the channel order).
- :func:`write_dwpose_onnx`: DWPose's pose-model I/O (``input`` ``[B, 3, 384, 288]`` ->
  ``simcc_x`` ``[B, 133, 576]``, ``simcc_y`` ``[B, 133, 768]``): a random conv net whose
  keypoints depend on every pixel and channel of the crop; :func:`write_pose_probe_onnx`:
  every keypoint on the brightest pixel of one input channel.
- :func:`write_pwcnet_checkpoint`: an MMFlow checkpoint (``meta`` + ``state_dict``) of a random
  PWC-Net whose keys are MMFlow's (:func:`mmflow_pwcnet` lays the modules out as MMFlow's
  source does); full size by default, :data:`TINY_PWCNET` for a narrow one.
- :func:`write_depth_anything`: a random ``DepthAnythingForDepthEstimation`` folder (config,
  safetensors, image-processor config: 518, keep aspect, multiple of 14), ``size="tiny"`` (4
  layers of width 16) or ``"small"`` (Depth Anything V1 Small's sizes, for timing).

Modules: :mod:`.dwpose` (ONNX graphs built with ``onnx.helper``), :mod:`.pwcnet`,
:mod:`.depth_anything`. Needs the dev extra for the ONNX writers (``onnx``); ``onnx`` and
``transformers`` are imported inside the functions that use them, so importing this package
costs only torch (through ``PWCNetConfig``). To add a stand-in: one ``write_*`` function taking
``path`` (+ knobs) and returning it, with the real file's input/output names and shapes.
"""

from preprocess.standins.depth_anything import (
    DEPTH_ANYTHING_SIZES,
    DepthAnythingSize,
    write_depth_anything,
)
from preprocess.standins.dwpose import (
    planted_head,
    write_dwpose_onnx,
    write_pose_probe_onnx,
    write_yolox_onnx,
    write_yolox_probe_onnx,
    yolox_anchors,
)
from preprocess.standins.pwcnet import TINY_PWCNET, mmflow_pwcnet, write_pwcnet_checkpoint

__all__ = [
    "DEPTH_ANYTHING_SIZES",
    "TINY_PWCNET",
    "DepthAnythingSize",
    "mmflow_pwcnet",
    "planted_head",
    "write_depth_anything",
    "write_dwpose_onnx",
    "write_pose_probe_onnx",
    "write_pwcnet_checkpoint",
    "write_yolox_onnx",
    "write_yolox_probe_onnx",
    "yolox_anchors",
]
