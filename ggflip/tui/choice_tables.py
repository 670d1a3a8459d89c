"""The multiple-choice run view's flip list, drawing itself from the live state.

`FlipTable` lists one quant's flips and appends rows while they arrive, rebuilding only when the
filter, order or quant changes (the model table above it is the run screen's `ModelTable`).

Every column gets an explicit width. A DataTable measures auto-width columns on its next idle,
but keeps the lines it rendered before in caches that do not depend on column widths, so a
frame drawn in between (a loaded machine) stays truncated (`q23` as `q2`) until some later
change; widths known when a row is added leave nothing to race.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.widgets import DataTable

from ggflip.choice.answers import QuestionRow
from ggflip.tui.choice_cells import FLIP_COLUMNS, flip_cells

# The widest a significant-digit KL cell gets (`0.00123`, `1.23e-5`). Widths only grow, so without
# this floor the KL column would be as wide as the smallest KL that happened to be drawn before
# (another quant's flips, shown for one refresh or not, depending on timing).
KL_CELL_WIDTH = 7


def fitted_widths(labels: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width: its widest cell or its label, in terminal cells."""
    return [
        max([cell_len(label), *(cell_len(row[i]) for row in rows)])
        for i, label in enumerate(labels)
    ]


class FlipTable(DataTable[str]):
    """The flipped questions of one quant, filtered and ordered as the user chose."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._widths = [
            max(width, KL_CELL_WIDTH) if column == "KL" else width
            for column, width in zip(FLIP_COLUMNS, fitted_widths(FLIP_COLUMNS, []))
        ]
        self._add_columns()
        self._shown: list[int] = []
        self._shown_key: tuple[object, ...] = ()

    def forget(self) -> None:
        """Rebuild on the next `show` (a new run)."""
        self._shown_key = ()

    def show(self, rows: Sequence[QuestionRow], key: tuple[object, ...], force: bool) -> None:
        """Show `rows`; append when they extend what is shown under the same `key`, else rebuild
        (keeping the cursor's position)."""
        indexes = [r.index for r in rows]
        cells = [flip_cells(r) for r in rows]
        widths = [max(pair) for pair in zip(self._widths, fitted_widths(FLIP_COLUMNS, cells))]
        rebuild = force or key != self._shown_key or indexes[: len(self._shown)] != self._shown
        if rebuild or widths != self._widths:
            cursor = self.cursor_row
            self.clear(columns=widths != self._widths)
            if widths != self._widths:
                self._widths = widths
                self._add_columns()
            for r, row_cells in zip(rows, cells):
                self.add_row(*row_cells, key=str(r.index))
            if rows:
                self.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        else:
            for r, row_cells in list(zip(rows, cells))[len(self._shown) :]:
                self.add_row(*row_cells, key=str(r.index))
        self._shown, self._shown_key = indexes, key

    def _add_columns(self) -> None:
        for column, width in zip(FLIP_COLUMNS, self._widths):
            self.add_column(column, key=column, width=width)
