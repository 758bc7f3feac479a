"""Optical flow between consecutive stored frames: backends by name (``flow.backend``).

Importing this package registers the built-in backends and stays light (NumPy, OpenCV; torch
is imported only when ``pwcnet`` is built):

=============  ===============================================================================
module         holds
=============  ===============================================================================
``base``       :class:`FlowBackend` (backward flow in stored pixels, F_0 = 0), the registry
               ``FLOW_BACKENDS`` and :func:`create_flow_backend`
``dis``        ``flow.backend=dis``: OpenCV DIS on the CPU (:class:`DISFlow`)
``pwcnet``     ``flow.backend=pwcnet``: MMFlow's PWC-Net ported to PyTorch, with its network
               (``pwcnet.net``) and checkpoint key map (``pwcnet.checkpoint``)
=============  ===============================================================================

The flow stage (``preprocess.stages``) builds the configured backend and hands its field to
the geometry layer (``preprocess.geometry.flow``). See docs/extractors.md.
"""

from preprocess.flow import pwcnet  # noqa: F401  (fill the registry)
from preprocess.flow.base import FLOW_BACKENDS, FlowBackend, create_flow_backend
from preprocess.flow.dis import DISFlow

__all__ = ["FLOW_BACKENDS", "DISFlow", "FlowBackend", "create_flow_backend"]
