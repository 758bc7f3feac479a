"""``python -m shards stats|validate|select OUT ...`` (see ``shards/cli.py`` and docs/shards.md)."""

from __future__ import annotations

import sys

from shards.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
