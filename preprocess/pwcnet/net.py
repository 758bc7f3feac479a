"""Moved to :mod:`preprocess.flow.pwcnet.net` (re-layout, issue 12): a shim for the old path."""

from preprocess.flow.pwcnet.net import (
    LEVELS,
    NEGATIVE_SLOPE,
    FlowEstimator,
    PWCNet,
    PWCNetConfig,
    correlation,
    estimate_flow,
    leaky,
    warp,
)

__all__ = [
    "LEVELS",
    "NEGATIVE_SLOPE",
    "FlowEstimator",
    "PWCNet",
    "PWCNetConfig",
    "correlation",
    "estimate_flow",
    "leaky",
    "warp",
]
