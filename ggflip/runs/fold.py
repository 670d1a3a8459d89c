"""The one fold of a run's events into progress and a partial report, shared by every mode.

`Fold` tallies what all modes share (which model is loading, scoring, cached or done, how far
each got and when) and hands every other event to its mode's part (`choice.fold`,
`corpus.fold`, `generate.fold`), which keeps that mode's rows and summaries and builds
`current_report()`: the final report once the run finished, else one holding what finished so
far. The CLI's progress bars and Ctrl-C report and the TUI's live tables both read a fold; no
front end folds events itself. No Textual, no rich.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from ggflip.runs.events import BASELINE, QUANT, BaselineFromCache, ModelLoaded, ModelLoading

RowT = TypeVar("RowT")
BaselineT = TypeVar("BaselineT")
SummaryT = TypeVar("SummaryT")
ReportT = TypeVar("ReportT")

LOADING, WAITING, CACHED, DONE = "loading", "waiting", "cached", "done"


@dataclass
class ModelProgress(Generic[RowT, SummaryT]):
    """How far one model of the set is: its state word, units done, when, and a quant's rows."""

    label: str
    role: str
    total: int
    path: str = ""
    status: str = WAITING
    done: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    rows: list[RowT] = field(default_factory=list)
    summary: SummaryT | None = None

    def rate(self, now: float) -> float:
        """Units per second since the model started; NaN before any time has passed."""
        if self.started_at is None or self.done == 0:
            return math.nan
        elapsed = (self.finished_at if self.finished_at is not None else now) - self.started_at
        return self.done / elapsed if elapsed > 0 else math.nan

    def eta(self, now: float) -> float:
        """Seconds left at the current rate; NaN when unknown, 0 when finished."""
        if self.done >= self.total:
            return 0.0
        rate = self.rate(now)
        return (self.total - self.done) / rate if rate > 0 else math.nan


@dataclass(frozen=True)
class Note:
    """Something a front end should tell the user (`warning`: worth a highlight)."""

    text: str
    warning: bool = False


@dataclass(frozen=True)
class EventKinds:
    """Which of a mode's event classes mean what to the shared tally, by the fields they hold."""

    baseline_finished: type  # .summary, with .label
    quant_finished: type  # .summary, with .label
    finished: type  # .report
    progressed: type | None = None  # .label, .done, .total, .row (None for the baseline)
    restored: type | None = None  # .label, .n_restored, .total


class Fold(Generic[RowT, BaselineT, SummaryT, ReportT]):
    """Per-model progress and the partial report of one run, folded from its events.

    A mode subclasses it, names its event classes (`EVENTS`), its working state (`WORKING`) and
    units (`UNIT`, `REDO`: what `--no-resume` does to them), and implements `_partial_report`;
    `_fold_mode` sees every event after the shared tally, for what only that mode keeps.
    """

    EVENTS: EventKinds
    WORKING = "scoring"
    UNIT = "questions"
    REDO = "scores"

    def __init__(
        self, models: Sequence[tuple[str, str]], total: int, clock: Callable[[], float]
    ) -> None:
        """`models`: (label, path) per model, baseline first; `total`: units per model."""
        self.clock = clock
        self.models: dict[str, ModelProgress[RowT, SummaryT]] = {
            label: ModelProgress(label, BASELINE if i == 0 else QUANT, total, str(path))
            for i, (label, path) in enumerate(models)
        }
        self.baseline_label = models[0][0]
        self.quant_labels = [label for label, _ in models[1:]]
        self.baseline: BaselineT | None = None
        self.quants: list[SummaryT] = []
        self.report: ReportT | None = None
        self.current: str | None = None
        self.state = "running"
        self.notes: list[Note] = []

    def fold(self, event: object) -> None:
        """Take one engine event into the tally, then into the mode's part."""
        if isinstance(event, ModelLoading):
            self.current = event.label
            self.models[event.label].status = LOADING
        elif isinstance(event, ModelLoaded):
            model = self.models[event.label]
            model.status, model.started_at = self.WORKING, self.clock()
        elif isinstance(event, BaselineFromCache):
            model = self.models[event.label]
            model.status, model.done = CACHED, model.total
            note = f"{event.label}: baseline scores from cache ({event.cache_path})"
            self.notes.append(Note(note))
        else:
            self._fold_outcome(event)
        self._fold_mode(event)

    def _fold_outcome(self, event: object) -> None:
        """Progress, restored units and finished models and runs, in any mode."""
        kinds, fields = self.EVENTS, cast(Any, event)  # the fields `EventKinds` names
        if kinds.progressed is not None and isinstance(event, kinds.progressed):
            model = self.models[fields.label]
            model.done, model.total = fields.done, fields.total
            if fields.row is not None:
                model.rows.append(fields.row)
        elif kinds.restored is not None and isinstance(event, kinds.restored):
            self.notes.append(
                Note(
                    f"{fields.label}: {fields.n_restored} of {fields.total} {self.UNIT} restored "
                    f"from the run store (--no-resume {self.REDO} them again)"
                )
            )
        elif isinstance(event, kinds.baseline_finished):
            self.baseline = fields.summary
            self.model_finished(fields.summary.label)
        elif isinstance(event, kinds.quant_finished):
            self.quants.append(fields.summary)
            self.model_finished(fields.summary.label, fields.summary)
        elif isinstance(event, kinds.finished):
            self.finished(fields.report)

    def _fold_mode(self, event: object) -> None:
        """What only this mode keeps of `event` (after the shared tally took it)."""

    def _partial_report(self) -> ReportT:
        raise NotImplementedError

    def finished(self, report: ReportT) -> None:
        """The run's final report arrived."""
        self.report, self.state, self.current = report, "finished", None

    def model_finished(self, label: str, summary: SummaryT | None = None) -> None:
        """A model is done (a cached baseline stays "cached"); a quant's summary is kept."""
        model = self.models[label]
        if summary is not None:
            model.summary = summary
        if model.status != CACHED:
            model.status, model.finished_at = DONE, self.clock()

    def stopped(self, state: str) -> None:
        """The run ended early ("cancelled" or "failed"): models still going are marked so."""
        self.state, self.current = state, None
        for model in self.models.values():
            if model.status in (LOADING, self.WORKING):
                model.status = state

    def current_report(self) -> ReportT:
        """The final report, or a partial one holding what finished so far."""
        return self.report if self.report is not None else self._partial_report()

    @property
    def resume_hint(self) -> str:
        """What an interrupted run keeps, for the CLI's last line ("" when nothing)."""
        return ""

    @property
    def n_finished_quants(self) -> int:
        """How many quants finished (and are in the partial report)."""
        return sum(1 for label in self.quant_labels if self.models[label].summary is not None)
