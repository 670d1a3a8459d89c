"""The run view: live per-model table, progress, and the flip list of the selected quant.

The engine runs in one thread worker that only posts messages (`RunScreen.SpecResolved`,
`RunScreen.EngineEvent`, `RunScreen.Scored`); the handlers here own every state change.
`Scored` is high-rate and cumulative, so a newer one may replace an older one of the same model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ggflip.choice.answers import QuestionRow
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import (
    BaselineFinished,
    Event,
    FloorFinished,
    QuantFinished,
    QuestionScored,
    RunFinished,
)
from ggflip.choice.resume import is_unfinished, run_progress
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.choice.spec import RunSpec
from ggflip.errors import GgflipError
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.tui.cells import SORT_NAMES, paired_note, status_text
from ggflip.tui.damage import DamageScreen
from ggflip.tui.export import export_report
from ggflip.tui.live import DIRECTIONS, SORTS, LiveRun
from ggflip.tui.tables import FlipTable, ModelProgress, SummaryTable
from ggflip.tui.views import (
    ErrorScreen,
    MarginScreen,
    QuestionDetailScreen,
    ResumeScreen,
    SubjectPicker,
    direction_text,
)
from ggflip.tui.worker_screen import REFRESH_SECONDS, WorkerScreen, failure_message

log = logging.getLogger("ggflip.tui")


class RunScreen(WorkerScreen):
    """A comparison running live; flips appear in the list as soon as they are scored."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel", "Cancel"),
        Binding("r", "rerun", "Re-run"),
        Binding("e", "export", "Export"),
        Binding("m", "margins", "Top margin"),
        Binding("w", "damage", "Where it hurts", show=False),
        Binding("d", "direction", "Direction"),
        Binding("s", "sort", "Sort"),
        Binding("f", "subject", "Subject"),
        Binding("l", "toggle_log", "Log"),
        Binding("escape", "back", "Setup"),
    ]
    DEFAULT_CSS = """
    RunScreen #summary { height: auto; max-height: 12; }
    RunScreen #paired { height: auto; padding: 0 1; display: none; }
    RunScreen #flip-title { height: auto; padding: 0 1; background: $boost; }
    RunScreen #flips { height: 1fr; }
    """

    class SpecResolved(Message):
        """The options became a RunSpec (questions loaded); the run is about to start."""

        def __init__(self, run_id: int, spec: RunSpec) -> None:
            super().__init__()
            self.run_id, self.spec = run_id, spec

    class ResumeOffered(Message):
        """An earlier, unfinished run of the same comparison left scored questions in the run
        store."""

        def __init__(self, run_id: int, stored: dict[str, int], total: int) -> None:
            super().__init__()
            self.run_id, self.stored, self.total = run_id, stored, total

    class EngineEvent(Message):
        """An engine event other than a scored question."""

        def __init__(self, run_id: int, event: Event) -> None:
            super().__init__()
            self.run_id, self.event = run_id, event

    class Scored(Message):
        """A model scored questions up to `done`; `rows` is its append-only list of comparison
        rows."""

        def __init__(
            self, run_id: int, label: str, done: int, rows: Sequence[QuestionRow] | None
        ) -> None:
            super().__init__()
            self.run_id, self.label, self.done, self.rows = run_id, label, done, rows

        def can_replace(self, message: Message) -> bool:
            # Rows are cumulative, so a later Scored of the same model and run carries everything.
            return isinstance(message, RunScreen.Scored) and (message.run_id, message.label) == (
                self.run_id,
                self.label,
            )

    def __init__(self, options: RunOptions) -> None:
        super().__init__()
        self.options = options
        self._offer_resume = options.resume
        self.live: LiveRun | None = None
        self.run_id = 0
        self.selected: str | None = None
        self.follow = True
        self.direction: str | None = None
        self.subject: str | None = None
        self.sort = "scored"
        self._refreshed_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading questions…", id="status")
        yield ModelProgress(id="progress")
        yield SummaryTable(self.app.size.width, id="summary")
        yield Static("", id="paired")
        yield Static("", id="flip-title")
        yield FlipTable(id="flips")
        yield RichLog(id="log", max_lines=2000, markup=False, wrap=False)
        yield Footer()

    def start(self) -> None:
        """Start (or restart) the run in a thread worker."""
        self.run_id += 1
        self.live = None
        self.query_one("#status", Static).update("Loading questions…")
        self._worker = self._run(self.run_id, self.options)

    @work(thread=True, exclusive=True, exit_on_error=False, group="run", name="ggflip run")
    def _run(self, run_id: int, options: RunOptions) -> str:
        """Resolve the options and iterate the engine, posting a message per event; stop when
        cancelled."""
        worker = get_current_worker()
        spec = resolve_run_spec(options)
        if worker.is_cancelled:
            return "cancelled"
        if self._offer_resume and spec.run_store is not None:
            stored = run_progress(spec, self.app.backend_factory(spec.model_set))  # type: ignore[attr-defined]
            total = len(spec.questions.questions)
            if is_unfinished(stored, total, spec.model_set.baseline.label):
                self.post_message(self.ResumeOffered(run_id, stored, total))
                return "asked"
        self.post_message(self.SpecResolved(run_id, spec))
        rows: dict[str, list[QuestionRow]] = {}
        # run_comparison is a generator: closing it stops between batches and frees the model.
        events = run_comparison(spec, self.app.backend_factory(spec.model_set))  # type: ignore[attr-defined]
        try:
            for event in events:
                if worker.is_cancelled:
                    return "cancelled"
                if isinstance(event, QuestionScored):
                    if event.row is not None:
                        rows.setdefault(event.label, []).append(event.row)
                    self.post_message(
                        self.Scored(run_id, event.label, event.done, rows.get(event.label))
                    )
                else:
                    self.post_message(self.EngineEvent(run_id, event))
        finally:
            events.close()
        return "finished"

    # --- messages from the worker -------------------------------------------------------------

    def on_run_screen_spec_resolved(self, message: SpecResolved) -> None:
        if message.run_id != self.run_id:
            return
        spec = message.spec
        self.live = LiveRun(spec, self.app.clock)  # type: ignore[attr-defined]
        self.sub_title = f"{spec.model_set.name} · {spec.task} · {spec.questions.selection}"
        self.live.state = "running"
        if self.selected not in self.live.quant_labels:
            self.selected = self.live.quant_labels[0] if self.live.quant_labels else None
        self.query_one(ModelProgress).build(self.live)
        self.query_one(SummaryTable).fill(self.live)
        self.query_one(FlipTable).forget()
        self._refresh(force=True)

    def on_resize(self, event: events.Resize) -> None:
        if self.query_one(SummaryTable).fit(event.size.width, self.live) and self.live:
            if self.selected is not None:
                self._select(self.selected)
            self._refresh(force=True)

    def on_run_screen_resume_offered(self, message: ResumeOffered) -> None:
        if message.run_id != self.run_id:
            return
        self.query_one("#status", Static).update(
            "An earlier run of this comparison was not finished."
        )

        def answer(resume: bool | None) -> None:
            self._offer_resume = False
            self.options = dataclasses.replace(self.options, resume=bool(resume))
            self.start()

        self.app.push_screen(ResumeScreen(message.stored, message.total), answer)

    def on_run_screen_engine_event(self, message: EngineEvent) -> None:
        if message.run_id != self.run_id or self.live is None:
            return
        event, live = message.event, self.live
        if isinstance(event, ModelLoading):
            live.loading(event.label)
            if event.role == "quant" and self.follow:
                self._select(event.label)
        elif isinstance(event, ModelLoaded):
            live.loaded(event.label)
        elif isinstance(event, BaselineFromCache):
            live.from_cache(event.label)
        elif isinstance(event, BaselineFinished):
            live.baseline_finished(event.summary)
        elif isinstance(event, FloorFinished):
            live.floor_finished(event.summary)
        elif isinstance(event, QuantFinished):
            live.quant_finished(event.summary)
        elif isinstance(event, RunFinished):
            live.finished(event.report)
        self._refresh(force=True)

    def on_run_screen_scored(self, message: Scored) -> None:
        if message.run_id != self.run_id or self.live is None:
            return
        self.live.scored(message.label, message.done, message.rows)
        self._dirty = True
        if time.monotonic() - self._refreshed_at >= REFRESH_SECONDS:
            self._refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a run's end is handled: cancelled, failed (GgflipError or a bug), or
        done."""
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.CANCELLED and self.live is not None:
            self.live.stopped("cancelled")
            self.notify(
                "Run cancelled; the models that finished are kept (e: export).", title="Cancelled"
            )
            self._refresh(force=True)
        elif event.state == WorkerState.ERROR:
            message = failure_message(event.worker.error, "run")
            if self.live is not None:
                self.live.stopped("failed")
            self.query_one("#status", Static).update(Text(f"Failed: {message}"))
            self._refresh(force=True)
            self.app.push_screen(ErrorScreen(message, title="The run stopped"))

    # --- drawing -----------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        """Redraw status, progress, summary and flip list from the live state."""
        if self.live is None:
            return
        self._dirty, self._refreshed_at = False, time.monotonic()
        self._draw_status()
        self.query_one(ModelProgress).draw(self.live)
        self._draw_summary()
        self._draw_flips(force)

    def _draw_status(self) -> None:
        assert self.live is not None
        text = status_text(self.live)
        if text is not None:
            self.query_one("#status", Static).update(Text(text))

    def _draw_summary(self) -> None:
        live = self.live
        assert live is not None
        self.query_one(SummaryTable).draw(live)
        note = self.query_one("#paired", Static)
        note.update(Text(paired_note(live), style="dim"))
        note.display = bool(live.partial())

    def _draw_flips(self, force: bool) -> None:
        live = self.live
        assert live is not None
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
            f"Flips of {self.selected}: {len(rows)} of {model.done} scored · {direction} (d) · "
            f"{subject} (f) · {SORT_NAMES[self.sort]} (s) · Enter on a flip: detail"
        )

    def _select(self, label: str) -> None:
        """Show `label`'s flips and put the summary cursor on it."""
        self.selected = label
        table = self.query_one("#summary", DataTable)
        if label in table.rows:
            table.move_cursor(row=table.get_row_index(label), animate=False)

    # --- user actions ------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "summary" or self.live is None:
            return
        label = event.row_key.value
        if label in self.live.quant_labels and label != self.selected:
            self.selected = label
            self.follow = label == self.live.current
            self._refresh(force=True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "summary" and self.live is not None:
            # Enter on a quant's row goes to its flips; Enter there opens a flip's detail.
            label = event.row_key.value
            if label in self.live.quant_labels:
                if label != self.selected:
                    self.selected, self.follow = label, label == self.live.current
                    self._refresh(force=True)
                self.query_one("#flips", DataTable).focus()
            return
        if (
            event.data_table.id != "flips"
            or self.live is None
            or self.selected is None
            or event.row_key.value is None
        ):
            return
        index = int(event.row_key.value)
        row = next(r for r in self.live.models[self.selected].rows if r.index == index)
        self.app.push_screen(
            QuestionDetailScreen(
                self.live.question(index), row, self.live.baseline_label, self.selected
            )
        )

    def action_export(self) -> None:
        """Write the report as JSON (the `--json` document) and as a Markdown summary."""
        if self.live is None:
            self.notify("Nothing to export yet.", severity="warning")
            return
        report = self.live.current_report()
        try:
            json_path, md_path = export_report(report, self.app.export_dir)  # type: ignore[attr-defined]
        except GgflipError as exc:
            self.app.push_screen(ErrorScreen(str(exc), title="Export failed"))
            return
        note = "" if report.complete else " (incomplete run: finished models only)"
        self.notify(f"Wrote {json_path} and {md_path}{note}", title="Exported", markup=False)

    def action_margins(self) -> None:
        if self.live is None:
            return
        charts = [
            (label, m.margin_buckets())
            for label, m in self.live.models.items()
            if m.role == "quant" and m.rows
        ]
        self.app.push_screen(MarginScreen(charts))

    def action_damage(self) -> None:
        """Open the per-subject / per-confidence view of the quant under the cursor."""
        if self.live is None or self.selected is None:
            return
        self.app.push_screen(DamageScreen(self.selected, self.live.models[self.selected].rows))

    def action_direction(self) -> None:
        self.direction = DIRECTIONS[(DIRECTIONS.index(self.direction) + 1) % len(DIRECTIONS)]
        self._refresh(force=True)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._refresh(force=True)

    def action_subject(self) -> None:
        if self.live is None:
            return

        def chosen(subject: str | None) -> None:
            self.subject = subject
            self._refresh(force=True)

        if self.selected is None:
            return
        subjects = self.live.flip_subjects(self.selected)
        self.app.push_screen(SubjectPicker(subjects, self.subject, self.selected), chosen)
