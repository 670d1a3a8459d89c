"""The old name of `ggflip.choice.row_store`, kept only until `choice/spec.py` imports that."""

from __future__ import annotations

from ggflip.choice.row_store import RowStore as RunStore

__all__ = ["RunStore"]
