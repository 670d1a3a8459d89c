"""Cells every mode's run view shares: the registry's metric columns after a view's own, a
table's columns fitted to the terminal (most important first, so a narrow terminal keeps the
columns that judge a quant), durations; plain strings, no Textual."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ggflip.reports.tables import value_of
from ggflip.scoring import metrics
from ggflip.scoring.metrics import Metric

# Under this many terminal columns a run view's table keeps only its narrow columns.
NARROW_WIDTH = 120
CELL_PADDING = 1  # a DataTable's blank cells either side of each column


def appended(mode: str, own: Sequence[tuple[str, int, str]]) -> list[Metric]:
    """The registered metrics of `mode` a TUI table shows after its `own` columns."""
    return metrics.appended_columns(mode, [name for _, _, name in own if name])


def appended_pairs(mode: str, own: Sequence[tuple[str, int, str]]) -> list[tuple[str, int]]:
    """(header, width) of each appended metric column: its short label, at least 8 wide."""
    return [(m.short, max(len(m.short), 8)) for m in appended(mode, own)]


def appended_cells(mode: str, own: Sequence[tuple[str, int, str]], summary: Any) -> list[str]:
    """The appended metric columns' cells from a summary (dict, summary object or None)."""
    return [
        m.cell(None if summary is None else value_of(summary, m.name)) for m in appended(mode, own)
    ]


def fit_columns(
    width: int, columns: Sequence[str], widths: Sequence[int], priority: Sequence[str]
) -> list[tuple[str, int]]:
    """A table's (column, width) pairs that fit a terminal `width` columns wide, in their own
    order: the columns of `priority` first, most important first, then the rest, each as long as
    it fits; under NARROW_WIDTH the model column is shorter."""
    short = width < NARROW_WIDTH
    pairs = [(c, 12 if c == "model" and short else w) for c, w in zip(columns, widths)]
    order = [c for c in priority if c in columns] + [c for c in columns if c not in priority]
    room = width - 1  # a cell of slack: a table that scrolls shows its scrollbar there
    kept: set[str] = set()
    for column in order:
        need = dict(pairs)[column] + 2 * CELL_PADDING
        if need <= room:
            kept.add(column)
            room -= need
    return [(c, w) for c, w in pairs if c in kept]


def duration(seconds: float) -> str:
    """Seconds as m:ss (or XhMM past an hour); "–" when unknown."""
    if math.isnan(seconds):
        return "–"
    whole = round(seconds)
    return (
        f"{whole // 60}:{whole % 60:02d}"
        if whole < 3600
        else f"{whole // 3600}h{whole % 3600 // 60:02d}"
    )


def plural(n: int, noun: str) -> str:
    """`n noun`, with an s unless n is 1: "1 flip", "0 flips"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
