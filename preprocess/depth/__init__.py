"""Relative depth, used to rank characters front to back: backends by name (``depth.backend``).

Importing this package registers the built-in backends and stays light (NumPy; torch and
transformers are imported only when ``depth_anything`` is built):

==================  ==========================================================================
module              holds
==================  ==========================================================================
``base``            :class:`DepthBackend`, the registry ``DEPTH_BACKENDS`` and
                    :func:`create_depth_backend`
``heuristic``       ``depth.backend=heuristic``: no map, ranks from the feet
                    (:class:`HeuristicDepth`)
``depth_anything``  ``depth.backend=depth_anything``: Depth Anything through transformers
==================  ==========================================================================

The depth stage (``preprocess.stages``) builds the configured backend; ``model.animate`` uses
the same one for the reference at inference. See docs/extractors.md.
"""

from preprocess.depth import depth_anything  # noqa: F401  (fill the registry)
from preprocess.depth.base import DEPTH_BACKENDS, DepthBackend, create_depth_backend
from preprocess.depth.heuristic import HeuristicDepth

__all__ = ["DEPTH_BACKENDS", "DepthBackend", "HeuristicDepth", "create_depth_backend"]
