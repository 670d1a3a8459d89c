"""The run screen's parts that hold no run: its keys, progress rows, model table, failure line.

`ProgressRows` draws a bar and a state word per model and `ModelTable` a row per model, both
from a fold (`ggflip.runs.fold`); `run_bindings` puts a mode's keys among the shared ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Label, ProgressBar

from ggflip.errors import GgflipError
from ggflip.runs.events import BASELINE
from ggflip.runs.fold import Fold

log = logging.getLogger("ggflip.tui")


def failure_message(error: BaseException | None, what: str) -> str:
    """The one line a failed run shows: a GgflipError as written, anything else as an internal
    error (logged with its traceback under `what`)."""
    if isinstance(error, GgflipError):
        return str(error)
    log.error("%s failed", what, exc_info=error)
    return f"internal error: {type(error).__name__}: {error}"


def run_bindings(
    *mode: BindingType, before: Sequence[BindingType] = (), back: str = "Setup"
) -> list[BindingType]:
    """A run screen's keys, in the footer's order: help, quit and back first (a narrow footer
    cuts its end), `before`, export and cancel, the mode's own, re-run and log."""
    return [
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "back", back),
        *before,
        Binding("e", "export", "Export"),
        Binding("c", "cancel", "Cancel"),
        *mode,
        Binding("r", "rerun", "Re-run"),
        Binding("l", "toggle_log", "Log"),
    ]


def footer() -> Footer:
    """Every view's footer: compact, and without the command palette's entry (ctrl+p still opens
    it), so a view's keys fit."""
    return Footer(compact=True, show_command_palette=False)


class ProgressRows(Vertical):
    """A progress bar and a state word per model of the set."""

    def build(self, fold: Fold[Any, Any, Any, Any]) -> None:
        """A row per model, replacing any earlier run's."""
        self.remove_children()
        rows = []
        for i, model in enumerate(fold.models.values()):
            role = " (base)" if model.role == BASELINE else ""
            rows.append(
                Horizontal(
                    Label(f"{model.label}{role}", classes="progress-label"),
                    ProgressBar(total=model.total or None, show_eta=False, id=f"bar-{i}"),
                    Label("waiting", id=f"state-{i}", classes="progress-state"),
                    classes="progress-row",
                )
            )
        self.mount_all(rows)

    def draw(self, fold: Fold[Any, Any, Any, Any]) -> None:
        """Each model's progress and state; rows not mounted yet are drawn on the next call."""
        for i, model in enumerate(fold.models.values()):
            try:
                bar = self.query_one(f"#bar-{i}", ProgressBar)
                state = self.query_one(f"#state-{i}", Label)
            except NoMatches:
                return
            bar.update(total=model.total or None, progress=model.done)
            state.update(model.status)


class ModelTable(DataTable["Text | str"]):
    """A table whose columns are those that fit the terminal (`fit`): the model table (a row per
    model, baseline first, cells from a mode) and generation's turn list."""

    def __init__(self, columns: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.columns_shown = list(columns)
        self._add_columns()

    def _add_columns(self) -> None:
        for column, width in self.columns_shown:
            self.add_column(column, key=column, width=width)

    def fit(self, columns: Sequence[tuple[str, int]], labels: Sequence[str]) -> bool:
        """Show `columns`; True when they changed (the rows were remade empty)."""
        if list(columns) == self.columns_shown:
            return False
        self.columns_shown = list(columns)
        self.clear(columns=True)
        self._add_columns()
        self.fill(labels)
        return True

    def fill(self, labels: Sequence[str]) -> None:
        """One empty row per model; `draw` fills them."""
        self.clear()
        for label in labels:
            self.add_row(*([""] * len(self.columns_shown)), key=label)

    def draw(self, label: str, names: Sequence[str], cells: Sequence[str]) -> None:
        """Update one model's shown cells (`names`: every column `cells` follows)."""
        if label not in self.rows:
            return
        shown = {column for column, _ in self.columns_shown}
        for column, value in zip(names, cells):
            if column in shown:
                self.update_cell(label, column, Text(value, no_wrap=True, end=""))
