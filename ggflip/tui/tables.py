"""The run view's tables and progress rows, each drawing itself from the live state.

`SummaryTable` has a row per model and shows the columns that fit the terminal
(`cells.summary_columns`); `FlipTable` lists one quant's flips and appends rows while they
arrive, rebuilding only when the filter, order or quant changes.

Every column gets an explicit width. A DataTable measures auto-width columns on its next idle,
but keeps the lines it rendered before in caches that do not depend on column widths, so a
frame drawn in between (a loaded machine) stays truncated (`q23` as `q2`) until some later
change; widths known when a row is added leave nothing to race.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Label, ProgressBar

from ggflip.choice.answers import QuestionRow
from ggflip.tui.cells import (
    FLIP_COLUMNS,
    column_pairs,
    flip_cells,
    summary_cells,
    summary_columns,
)
from ggflip.tui.live import LiveRun


def fitted_widths(labels: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width: its widest cell or its label, in terminal cells."""
    return [
        max([cell_len(label), *(cell_len(row[i]) for row in rows)])
        for i, label in enumerate(labels)
    ]


class SummaryTable(DataTable[str]):
    """A row per model (baseline first) with the summary metrics so far."""

    def __init__(self, width: int, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.columns_shown = summary_columns(width)
        for column, column_width in self.columns_shown:
            self.add_column(column, key=column, width=column_width)

    def fit(self, width: int, live: LiveRun | None) -> bool:
        """Show the columns that fit `width`; True when they changed (the rows were remade)."""
        columns = summary_columns(width)
        if columns == self.columns_shown:
            return False
        self.columns_shown = columns
        self.clear(columns=True)
        for column, column_width in columns:
            self.add_column(column, key=column, width=column_width)
        if live is not None:
            self.fill(live)
        return True

    def fill(self, live: LiveRun) -> None:
        """One empty row per model; `draw` fills them."""
        self.clear()
        for label in live.models:
            self.add_row(*([""] * len(self.columns_shown)), key=label)

    def draw(self, live: LiveRun) -> None:
        """Update every shown cell from the live state."""
        now = live.clock()
        shown = {column for column, _ in self.columns_shown}
        columns = column_pairs()
        for label, model in live.models.items():
            if label in self.rows:
                for (column, _), value in zip(columns, summary_cells(live, model, now)):
                    if column in shown:
                        self.update_cell(label, column, value)


class FlipTable(DataTable[str]):
    """The flipped questions of one quant, filtered and ordered as the user chose."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._widths = fitted_widths(FLIP_COLUMNS, [])
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


class ModelProgress(Vertical):
    """A progress bar and a state word per model of the set."""

    def build(self, live: LiveRun) -> None:
        """A row per model, replacing any earlier run's."""
        self.remove_children()
        rows = []
        for i, model in enumerate(live.models.values()):
            role = " (base)" if model.role == "baseline" else ""
            rows.append(
                Horizontal(
                    Label(f"{model.label}{role}", classes="progress-label"),
                    ProgressBar(total=model.total, show_eta=False, id=f"bar-{i}"),
                    Label("waiting", id=f"state-{i}", classes="progress-state"),
                    classes="progress-row",
                )
            )
        self.mount_all(rows)

    def draw(self, live: LiveRun) -> None:
        """Each model's progress and state; rows not mounted yet are drawn on the next call."""
        for i, model in enumerate(live.models.values()):
            try:
                bar = self.query_one(f"#bar-{i}", ProgressBar)
                state = self.query_one(f"#state-{i}", Label)
            except NoMatches:
                return
            bar.update(total=model.total, progress=model.done)
            state.update(model.status)
