"""Cache keys: a stable digest of everything that determines a cached result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Bumped when the meaning of a key's parts changes, so every older entry misses.
CACHE_FORMAT = 6


def cache_key(parts: Mapping[str, Any]) -> str:
    """A stable digest of the key's parts (any JSON-serializable mapping)."""
    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
