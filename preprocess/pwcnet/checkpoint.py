"""Moved to :mod:`preprocess.flow.pwcnet.checkpoint` (re-layout, issue 12): a shim for the old
path. ``read_state_dict`` is now :func:`preprocess.weights.read_state_dict`."""

from preprocess.flow.pwcnet.checkpoint import (
    PARAMS,
    config_from_state_dict,
    convert_state_dict,
    load_mmflow_pwcnet,
    mmflow_key_map,
)
from preprocess.weights import read_state_dict

__all__ = [
    "PARAMS",
    "config_from_state_dict",
    "convert_state_dict",
    "load_mmflow_pwcnet",
    "mmflow_key_map",
    "read_state_dict",
]
