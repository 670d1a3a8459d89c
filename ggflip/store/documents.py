"""JSON documents as every mode writes them: plain values, non-finite floats as null."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ggflip.errors import DataError
from ggflip.store.reading import read_named_file


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity (at any depth) replaced by None, tuples as lists.

    JSON has no NaN; a metric that is undefined (no rows, no finite values) is written as null,
    and `allow_nan=False` in `to_json` makes a missed one an error instead of invalid JSON.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(document: Any, indent: int | None = 1) -> str:
    """The document as strict JSON text (non-finite floats as null, UTF-8 kept as is)."""
    return json.dumps(finite(document), indent=indent, allow_nan=False, ensure_ascii=False)


def read_report(path: Path, schemas: Collection[Any], write_hint: str) -> dict[str, Any]:
    """A saved JSON report whose `schema` is one of `schemas`.

    Raises:
        DataError: missing, not JSON, or another document (`write_hint` says how to make one).
    """
    text = read_named_file(path, "report", DataError)
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(document, dict) or document.get("schema") not in schemas:
        raise DataError(f"{path}: not a ggflip report{write_hint}")
    return document
