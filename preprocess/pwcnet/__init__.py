"""Moved to :mod:`preprocess.flow.pwcnet` (re-layout, issue 12): this shim keeps the old names
importable until the lead removes it."""

from preprocess.flow.pwcnet import CHECKPOINT, PWCNET_HOWTO, PWCNetFlow

__all__ = ["CHECKPOINT", "PWCNET_HOWTO", "PWCNetFlow"]
