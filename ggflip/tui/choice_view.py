"""Multiple choice's adapter to the one run screen: the summary columns, the flip list of the
selected quant, a flip's detail, the top-margin and "where it hurts" views, resuming.

Flips appear in the list as soon as they are scored; d, s and f filter and order it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from ggflip.backends.base import BackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import FLOOR
from ggflip.choice.report import Report
from ggflip.choice.resume import run_progress
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.choice.spec import RunSpec
from ggflip.reports.choice import render_markdown
from ggflip.runs.events import QUANT
from ggflip.runs.resume import is_unfinished
from ggflip.tasks.calibration import calibration_warning
from ggflip.tui import help
from ggflip.tui.choice_cells import (
    SORT_NAMES,
    column_pairs,
    paired_note,
    summary_cells,
    summary_columns,
)
from ggflip.tui.choice_live import DIRECTIONS, SORTS, LiveRun
from ggflip.tui.choice_tables import FlipTable
from ggflip.tui.columns import plural
from ggflip.tui.damage import DamageScreen
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.run_widgets import run_bindings
from ggflip.tui.views import MarginScreen, QuestionDetailScreen, SubjectPicker, direction_text


class ChoiceScreen(RunScreen[RunOptions, RunSpec, LiveRun]):
    """A multiple-choice comparison running live."""

    BINDINGS: ClassVar[list[BindingType]] = run_bindings(
        Binding("m", "margins", "Margins"),
        Binding("w", "damage", "Where it hurts"),
        Binding("d", "direction", "Direction"),
        Binding("f", "subject", "Subject"),
        Binding("s", "sort", "Sort"),
    )
    DEFAULT_CSS = """
    ChoiceScreen #paired { height: auto; padding: 0 1; display: none; }
    ChoiceScreen #flip-title { height: auto; padding: 0 1; background: $boost; }
    ChoiceScreen #flips { height: 1fr; }
    """
    STARTING = "Loading questions…"
    FINISHED = "Finished. e: export · r: re-run · m: margins · w: where it hurts · ?: help"
    HELP_MODE = help.CHOICE
    LIST_ID = "flips"
    LIST_NAME = "flips"

    def __init__(self, options: RunOptions) -> None:
        super().__init__(options)
        self.direction: str | None = None
        self.subject: str | None = None
        self.sort = "scored"

    def selectable(self) -> list[str]:
        """The quants' rows and the floor's (its flips are what batching alone does)."""
        live = self.live
        if live is None:
            return []
        return [label for label, m in live.models.items() if m.role in (QUANT, FLOOR)]

    def selection_changed(self) -> None:
        """A subject filter belongs to the quant it was picked for: another quant starts on all
        subjects (its own flips may be elsewhere)."""
        self.subject = None

    def resolve(self, options: RunOptions) -> RunSpec:
        return resolve_run_spec(options)

    def resolve_run(self, options: RunOptions) -> tuple[RunSpec, BackendFactory | None]:
        """With `tui --baseline-pack`: the pack's run and its `PackFactory` (`tui.pack_run`)."""
        pack = getattr(self.app, "pack", None)
        return super().resolve_run(options) if pack is None else pack.run(options)

    def make_fold(self, spec: RunSpec) -> LiveRun:
        return LiveRun(spec, self.app.clock)  # type: ignore[attr-defined]

    def engine(self, spec: RunSpec, factory: BackendFactory) -> Iterator[object]:
        return run_comparison(spec, factory)

    def stored_progress(self, spec: RunSpec, factory: BackendFactory) -> tuple[dict[str, int], int]:
        if spec.run_store is None:
            return {}, 0
        stored, total = run_progress(spec, factory), len(spec.questions.questions)
        unfinished = is_unfinished(stored, total, spec.model_set.baseline.label)
        return (stored, total) if unfinished else ({}, 0)

    def resumed(self, options: RunOptions, resume: bool) -> RunOptions:
        return dataclasses.replace(options, resume=resume)

    def subtitle(self, spec: RunSpec) -> str:
        warning = calibration_warning(spec.calibration)
        return f"{spec.model_set.name} · {spec.task} · {spec.questions.selection}" + (
            f" · {warning}" if warning else ""
        )

    def columns(self) -> list[tuple[str, int]]:
        return column_pairs()

    def table_columns(self, width: int) -> list[tuple[str, int]]:
        return summary_columns(width, floor=self.options.floor)

    def model_cells(self, label: str, now: float) -> Sequence[str]:
        assert self.live is not None
        return summary_cells(self.live, self.live.models[label], now)

    def compose_view(self) -> ComposeResult:
        yield Static("", id="paired")
        yield Static("", id="flip-title")
        yield FlipTable(id="flips")

    def run_started(self) -> None:
        self.query_one(FlipTable).forget()

    def setup_options(self) -> RunOptions:
        return self.options

    def report_files(self, report: Report) -> tuple[str, str]:
        return f"ggflip-{report.set}-{report.task}", render_markdown(report)

    def draw_view(self, force: bool) -> None:
        live = self.live
        assert live is not None
        note = self.query_one("#paired", Static)
        note.update(Text(paired_note(live), style="dim"))
        note.display = bool(live.partial())
        title = self.query_one("#flip-title", Static)
        if self.selected is None:
            title.update("No quant in this set: nothing to compare.")
            return
        rows = live.flips(self.selected, self.direction, self.subject, self.sort)
        key = (self.selected, self.direction, self.subject, self.sort)
        self.query_one(FlipTable).show(rows, key, force)
        model = live.models[self.selected]
        direction = "both directions" if self.direction is None else direction_text(self.direction)
        subject = "all subjects" if self.subject is None else self.subject
        title.update(
            f"{self.selected}: {plural(len(rows), 'flip')} in {model.done} scored · "
            f"{direction} (d) · {subject} (f) · {SORT_NAMES[self.sort]} (s) · Enter: detail"
        )

    def open_detail(self, key: str) -> None:
        live = self.live
        assert live is not None and self.selected is not None
        index = int(key)
        row = next(r for r in live.models[self.selected].rows if r.index == index)
        self.app.push_screen(
            QuestionDetailScreen(live.question(index), row, live.baseline_label, self.selected)
        )

    def action_margins(self) -> None:
        if self.live is not None:
            self.app.push_screen(MarginScreen(self._margin_charts))

    def _margin_charts(self) -> list[tuple[str, list[dict[str, float | int]]]]:
        """Each quant's flip rate per margin bucket over its rows so far."""
        live = self.live
        if live is None:
            return []
        return [
            (label, live.margin_buckets(label))
            for label, m in live.models.items()
            if m.role == QUANT and m.rows
        ]

    def action_damage(self) -> None:
        """Open the per-subject / per-confidence view of the quant under the cursor (live)."""
        if self.live is None or self.selected is None:
            return
        model = self.live.models[self.selected]
        self.app.push_screen(DamageScreen(self.selected, lambda: model.rows))

    def action_direction(self) -> None:
        self.direction = DIRECTIONS[(DIRECTIONS.index(self.direction) + 1) % len(DIRECTIONS)]
        self._refresh(force=True)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._refresh(force=True)

    def action_subject(self) -> None:
        if self.live is None or self.selected is None:
            return

        def chosen(subject: str | None) -> None:
            self.subject = subject
            self._refresh(force=True)

        subjects = self.live.flip_subjects(self.selected)
        self.app.push_screen(SubjectPicker(subjects, self.subject, self.selected), chosen)
