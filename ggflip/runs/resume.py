"""Whether an earlier run of a comparison is worth offering to resume (every mode's run store)."""

from __future__ import annotations

from collections.abc import Mapping


def is_unfinished(stored: Mapping[str, int], total: int, baseline: str) -> bool:
    """Whether `run_progress`'s counts show a run that was started and not finished, the one
    case worth asking about: some quant has stored questions (or the baseline some but not all)
    while some model still lacks questions. A complete comparison is just read back."""
    started = any(n for label, n in stored.items() if label != baseline) or (
        0 < stored[baseline] < total
    )
    return started and any(n < total for n in stored.values())
