"""What a mode supplies to the one run screen (`tui.run_screen.RunScreen`), with the defaults.

A mode's screen subclasses `RunScreen` and fills in this adapter: how options become a spec and
the engine's events, its fold, the model table's columns and cells, the widgets under the table
(a list and its detail view), the status line's words, the report files of an export, the setup
values Esc shows again and, where its engine keeps a run store, the resume offer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

from textual.app import ComposeResult

from ggflip.backends.base import BackendFactory
from ggflip.choice.setup import RunOptions
from ggflip.runs.events import QUANT
from ggflip.runs.fold import LOADING, Fold, ModelProgress

OptionsT = TypeVar("OptionsT")
SpecT = TypeVar("SpecT")
FoldT = TypeVar("FoldT", bound=Fold[Any, Any, Any, Any])


class ModeAdapter(Generic[OptionsT, SpecT, FoldT]):
    """The parts of a run screen that differ by mode."""

    STARTING = "Checking model files and vocabularies…"  # until the spec is resolved
    CHECKING = "Checking model files and vocabularies…"  # until the first model loads
    VERB = "Scoring"
    FINISHED = "Finished: every model scored. e: export · r: re-run"
    CANCELLED = "llama.cpp stops after its current batch. e: export"
    WHAT = "run"  # the run in messages: "The run stopped"
    LIST_ID: str | None = None  # the list under the table that Enter on a quant's row focuses
    LIST_NAME = "comparison"  # what that list shows, in messages

    live: FoldT | None

    def resolve(self, options: OptionsT) -> SpecT:
        """The spec of `options` (in the worker thread: may read files)."""
        raise NotImplementedError

    def resolve_run(self, options: OptionsT) -> tuple[SpecT, BackendFactory | None]:
        """The spec of `options` and the factory the run brings (a baseline pack's), or None
        for the app's factory of the spec's model set (in the worker thread)."""
        return self.resolve(options), None

    def selectable(self) -> list[str]:
        """The rows of the model table that Enter and the cursor show under the table: the
        quants'."""
        return list(self.live.quant_labels) if self.live is not None else []

    def selection_changed(self) -> None:
        """Another row is shown under the table (reset what belonged to the one before)."""

    def make_fold(self, spec: SpecT) -> FoldT:
        """A fresh fold for a run of `spec`."""
        raise NotImplementedError

    def engine(self, spec: SpecT, factory: BackendFactory) -> Iterator[object]:
        """The engine's event generator for `spec`."""
        raise NotImplementedError

    def stored_progress(self, spec: SpecT, factory: BackendFactory) -> tuple[dict[str, int], int]:
        """Units per model an earlier unfinished run left in the run store, and the total ({}
        when nothing to offer); called in the worker thread."""
        return {}, 0

    def resumed(self, options: OptionsT, resume: bool) -> OptionsT:
        """`options` with the user's answer to the resume offer."""
        return options

    def subtitle(self, spec: SpecT) -> str:
        raise NotImplementedError

    def columns(self) -> list[tuple[str, int]]:
        """Every (column, width) of the model table in `model_cells` order: the mode's own, the
        metrics the registry appends (`scoring.metrics`), progress."""
        raise NotImplementedError

    def table_columns(self, width: int) -> list[tuple[str, int]]:
        """The model table's (column, width) pairs shown at a terminal `width` wide."""
        return self.columns()

    def model_cells(self, label: str, now: float) -> Sequence[str]:
        """One model's row of the table, in `columns` order."""
        raise NotImplementedError

    def compose_view(self) -> ComposeResult:
        """The widgets under the model table."""
        yield from ()

    def view_resized(self, width: int) -> bool:
        """The terminal is now `width` wide: fit the view under the table; True when it must be
        drawn again."""
        return False

    def run_started(self) -> None:
        """A new run's fold is in `self.live`: reset what the view under the table shows."""

    def event_folded(self, event: object) -> None:
        """React to one event after the fold took it (most modes need nothing)."""

    def draw_view(self, force: bool) -> None:
        """Redraw the widgets under the table from the fold (`force`: rebuild lists)."""

    def status_text(self) -> str | None:
        """The status line: what the run is doing now; None while a failure message is shown
        instead."""
        live = self.live
        assert live is not None
        if live.state == "running" and live.current:
            model = live.models[live.current]
            verb = "Loading" if model.status == LOADING else self.VERB
            named = model.role == QUANT or f"({model.role})" in model.label
            role = "" if named else f" ({model.role})"  # "F16 (baseline)", "Q4_K_M", "F16 (floor)"
            return f"{verb} {model.label}{role}: {self.progress_text(model)}"
        if live.state == "finished":
            return self.FINISHED
        if live.state == "cancelled":
            n = live.n_finished_quants
            return f"Cancelled: {n} quant(s) finished and kept; {self.CANCELLED}"
        if live.state == "failed":
            return None
        return self.CHECKING

    def progress_text(self, model: ModelProgress[Any, Any]) -> str:
        """How far the model the run is on got, for the status line."""
        return f"{model.done}/{model.total}"

    def open_detail(self, key: str) -> None:
        """Enter on a row of the list under the table (LIST_ID)."""

    def report_files(self, report: Any) -> tuple[str, str]:
        """The export's file stem and Markdown text for `report`."""
        raise NotImplementedError

    def setup_options(self) -> RunOptions | None:
        """The setup view's values for this run, shown again when Esc goes back to it."""
        return None
