"""What a report says in words under its summary table, for every mode with the quantities:
accuracy that cannot rank the quants, and what the `(≈ source)` label mark means.

Each note reads a summary through `tables.value_of`, so a mode's summary object and its JSON
dict both work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ggflip.config.labels import NUMERICS_MARK
from ggflip.reports.tables import value_of
from ggflip.scoring.floor import ALPHA
from ggflip.scoring.formats import pct, points

SOURCE_MARK = "(≈ source)"
SOURCE_NOTE = (
    f"{SOURCE_MARK}: the baseline was made from this quant's own source file (the demo's F16 is "
    "the Q4_K_M release dequantized), so re-quantizing lands back on nearly the same weights: "
    "this row shows far less damage than the type does to a true F16."
)


NUMERICS_NOTE = (
    f"{NUMERICS_MARK}: compared against a baseline pack computed by another llama.cpp build or "
    "with other settings (--allow-numerics-mismatch): part of each of its numbers may be that "
    "difference rather than the quantization."
)


def source_note(labels: Iterable[str]) -> str:
    """The explanation of `(≈ source)` when a model's label carries it (models.toml marks a quant
    the baseline was rebuilt from), and of `(other numerics)` (a quant compared against a pack
    computed elsewhere); "" without either."""
    labels = list(labels)
    found = [
        note
        for mark, note in ((SOURCE_MARK, SOURCE_NOTE), (NUMERICS_MARK, NUMERICS_NOTE))
        if any(mark in label for label in labels)
    ]
    return " ".join(found)


def _number(item: Any, name: str) -> float | None:
    value = value_of(item, name)
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _hidden(q: Any, with_floor: bool) -> bool:
    """Flips that accuracy hides: some, a McNemar p >= ALPHA, and (with a floor) more flips than
    the floor's by its own test."""
    p = _number(q, "mcnemar_p")
    if not (value_of(q, "n_flips_lost") or value_of(q, "n_flips_gained")) or p is None:
        return False
    floor_p = _number(q, "floor_flips_p")
    return p >= ALPHA and (not with_floor or (floor_p is not None and floor_p < ALPHA))


def accuracy_noise_note(quants: Iterable[Any], with_floor: bool) -> str:
    """In words, when accuracy would rank the quants wrongly: those whose accuracy change is within
    chance (McNemar p >= ALPHA) while their flips are not (with a noise floor: significantly more
    than the floor's; without: any); "" when there is none."""
    parts = []
    for q in quants:
        if not _hidden(q, with_floor):
            continue
        change = _number(q, "delta_accuracy")  # the table's Δacc where the mode has one
        accuracy, base = _number(q, "accuracy"), _number(q, "baseline_accuracy")
        if change is None and accuracy is not None and base is not None:
            change = accuracy - base
        delta = "" if change is None else f" {points(change)} pt"
        flipped = _number(q, "flips")  # the table's flips where the mode has the column
        if flipped is None:
            flipped = (_number(q, "flips_lost") or 0.0) + (_number(q, "flips_gained") or 0.0)
        parts.append(
            f"{value_of(q, 'label')}{delta} (McNemar p = {value_of(q, 'mcnemar_p'):.2g}) with "
            f"{pct(flipped)} of answers flipped ({value_of(q, 'n_flips_lost')} c→i, "
            f"{value_of(q, 'n_flips_gained')} i→c)"
        )
    if not parts:
        return ""
    return (
        f"Accuracy is within noise here, flips are not: {'; '.join(parts)}. Answers lost and "
        "regained cancel out in accuracy, so rank these by flips and KL, not by accuracy."
    )
