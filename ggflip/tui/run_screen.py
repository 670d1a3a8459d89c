"""The one run screen of every mode: the worker, progress, the model table, status, log, export.

`RunScreen` runs the engine in one thread worker that never touches a widget: it resolves the
options into a spec (`SpecResolved`), may find an unfinished earlier run (`ResumeOffered`), then
queues every engine event and posts `EventsArrived`, which a newer one replaces; the handler
folds the queued events, in order, into the mode's fold (`ggflip.runs.fold`) and redraws from it.
Worker failures are handled once, in `on_worker_state_changed`. A mode subclasses it and fills
in its adapter (`run_adapter.ModeAdapter`: spec and events, fold, columns and cells, the list
under the table and its detail view, report files): `choice_view`, `gen_view`, `corpus_view`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ggflip.errors import GgflipError
from ggflip.runs.events import QUANT
from ggflip.tui.export import export_files
from ggflip.tui.run_adapter import FoldT, ModeAdapter, OptionsT, SpecT
from ggflip.tui.run_widgets import ModelTable, ProgressRows, failure_message, footer
from ggflip.tui.views import ErrorScreen, ResumeScreen

REFRESH_SECONDS = 0.25
log = logging.getLogger("ggflip.tui")


class RunScreen(ModeAdapter[OptionsT, SpecT, FoldT], Screen[None]):
    """One engine run going live; a mode's subclass supplies its adapter's parts."""

    BINDINGS: ClassVar[list[BindingType]] = []  # each mode's: `run_bindings(...)`
    DEFAULT_CSS = """
    RunScreen #status { height: 1; padding: 0 1; background: $boost; }
    RunScreen #progress { height: auto; padding: 0 1; }
    RunScreen .progress-row { height: 1; }
    RunScreen .progress-label { width: 22; }
    RunScreen .progress-state { width: 16; padding-left: 1; }
    RunScreen ProgressBar Bar { width: 40; }
    RunScreen #summary { height: auto; max-height: 12; }
    RunScreen #log { height: 10; border-top: solid $accent; display: none; }
    RunScreen.show-log #log { display: block; }
    RunScreen.short #progress { display: none; }
    """
    SHORT_HEIGHT = 30  # under this many rows the progress bars go (the table's done column stays)

    class SpecResolved(Message):
        """The options became a spec (questions, prompts or texts loaded); the run starts."""

        def __init__(self, run_id: int, spec: object) -> None:
            super().__init__()
            self.run_id, self.spec = run_id, spec

    class ResumeOffered(Message):
        """An earlier, unfinished run of the same comparison left scored units in the run store."""

        def __init__(self, run_id: int, stored: dict[str, int], total: int) -> None:
            super().__init__()
            self.run_id, self.stored, self.total = run_id, stored, total

    class EventsArrived(Message):
        """Engine events of run `run_id` are queued; a newer message of the same run stands for
        this one (the queue holds them all)."""

        def __init__(self, run_id: int) -> None:
            super().__init__()
            self.run_id = run_id

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, RunScreen.EventsArrived) and message.run_id == self.run_id

    def __init__(self, options: OptionsT) -> None:
        super().__init__()
        self.options = options
        self._offer_resume = bool(getattr(options, "resume", False))
        self.live: FoldT | None = None
        self.run_id = 0
        self.selected: str | None = None
        self.follow = True
        self._queue: deque[object] = deque()
        self._dirty = False
        self._refreshed_at = 0.0
        self._worker: Worker[str] | None = None

    # --- the run -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.STARTING, id="status")
        yield ProgressRows(id="progress")
        yield ModelTable(self.table_columns(self.app.size.width), id="summary")
        yield from self.compose_view()
        yield RichLog(id="log", max_lines=2000, markup=False, wrap=False)
        yield footer()

    def on_mount(self) -> None:
        self.set_class(self.app.size.height < self.SHORT_HEIGHT, "short")
        log_panel = self.query_one("#log", RichLog)
        for line in self.app.log_lines:  # type: ignore[attr-defined]
            log_panel.write(line)
        self.set_interval(REFRESH_SECONDS, self._refresh_if_dirty)
        self.start()

    def start(self) -> None:
        """Start (or restart) the run in a thread worker."""
        self.run_id += 1
        self.live = None
        self._queue = deque()
        self.query_one("#status", Static).update(self.STARTING)
        self._worker = self._run(self.run_id, self.options, self._queue)

    @work(thread=True, exclusive=True, exit_on_error=False, group="run", name="ggflip run")
    def _run(self, run_id: int, options: OptionsT, queue: deque[object]) -> str:
        """Resolve the options and iterate the engine, queueing its events; stop when
        cancelled."""
        worker = get_current_worker()
        spec, factory = self.resolve_run(options)
        if factory is None:  # the spec's model set names its backend (backends.registry)
            model_set = spec.model_set  # type: ignore[attr-defined]
            factory = self.app.backend_factory(model_set)  # type: ignore[attr-defined]
        if worker.is_cancelled:
            return "cancelled"
        if self._offer_resume:
            stored, total = self.stored_progress(spec, factory)
            if stored:
                self.post_message(self.ResumeOffered(run_id, stored, total))
                return "asked"
        self.post_message(self.SpecResolved(run_id, spec))
        # The engine is a generator: closing it stops between batches and frees the model.
        engine_events = self.engine(spec, factory)
        try:
            for event in engine_events:
                if worker.is_cancelled:
                    return "cancelled"
                queue.append(event)
                self.post_message(self.EventsArrived(run_id))
        finally:
            close = getattr(engine_events, "close", None)
            if close is not None:
                close()
        return "finished"

    def on_run_screen_spec_resolved(self, message: SpecResolved) -> None:
        if message.run_id != self.run_id:
            return
        spec: SpecT = message.spec  # type: ignore[assignment]
        live = self.live = self.make_fold(spec)
        self.sub_title = self.subtitle(spec)
        self.query_one(ProgressRows).build(live)
        self.query_one(ModelTable).fill(list(live.models))
        labels = self.selectable()
        self.run_started()
        first = live.quant_labels or labels  # a quant's row first, not the floor's
        if self.selected in labels:
            self._select(self.selected)
        elif first:
            self._select(first[0])
        else:
            self.selected = None
        self._refresh(force=True)

    def on_run_screen_resume_offered(self, message: ResumeOffered) -> None:
        if message.run_id != self.run_id:
            return
        self.query_one("#status", Static).update(
            "An earlier run of this comparison was not finished."
        )

        def answer(resume: bool | None) -> None:
            self._offer_resume = False
            self.options = self.resumed(self.options, bool(resume))
            self.start()

        self.app.push_screen(ResumeScreen(message.stored, message.total), answer)

    def on_run_screen_events_arrived(self, message: EventsArrived) -> None:
        live = self.live
        if message.run_id != self.run_id or live is None:
            return
        before = self._signature()
        noted = len(live.notes)
        while self._queue:
            event = self._queue.popleft()
            live.fold(event)
            self.event_folded(event)
            self._follow(event)
        for note in live.notes[noted:]:
            log.info("%s", note.text)
            if note.warning:
                self.notify(note.text, severity="warning", markup=False)
        if self._signature() != before:
            self._refresh(force=True)
        else:
            self._dirty = True
            if time.monotonic() - self._refreshed_at >= REFRESH_SECONDS:
                self._refresh()

    def _follow(self, event: object) -> None:
        """Show the quant the run just went on to, unless the user chose another one."""
        label = self.live.current if self.live is not None else None
        if not self.follow or label is None or label == self.selected:
            return
        if getattr(event, "role", None) == QUANT and getattr(event, "label", None) == label:
            self._select(label)

    def _signature(self) -> tuple[object, ...]:
        """What, when it changes, redraws everything at once: the run's and each model's state."""
        live = self.live
        assert live is not None
        return (live.state, live.current, *(m.status for m in live.models.values()))

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
            message = failure_message(event.worker.error, self.WHAT)
            if self.live is not None:
                self.live.stopped("failed")
                self._refresh(force=True)
            self.query_one("#status", Static).update(Text(f"Failed: {message}"))
            self.app.push_screen(ErrorScreen(message, title=f"The {self.WHAT} stopped"))

    # --- drawing -----------------------------------------------------------------------------

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._refresh()

    def _refresh(self, force: bool = False) -> None:
        """Redraw status, progress, the model table and the view under it from the fold."""
        live = self.live
        if live is None:
            return
        self._dirty, self._refreshed_at = False, time.monotonic()
        text = self.status_text()
        if text is not None:
            self.query_one("#status", Static).update(Text(text))
        self.query_one(ProgressRows).draw(live)
        table, now = self.query_one(ModelTable), live.clock()
        names = [column for column, _ in self.columns()]
        for label in live.models:
            table.draw(label, names, self.model_cells(label, now))
        self.draw_view(force)

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < self.SHORT_HEIGHT, "short")
        labels = list(self.live.models) if self.live is not None else []
        refit = self.query_one(ModelTable).fit(self.table_columns(event.size.width), labels)
        if refit and self.selected is not None:
            self._select(self.selected)
        if self.view_resized(event.size.width) or refit:
            self._refresh(force=True)

    def _select(self, label: str) -> None:
        """Show `label` under the table and put the table's cursor on it."""
        self._choose(label)
        table = self.query_one(ModelTable)
        if label in table.rows:
            table.move_cursor(row=table.get_row_index(label), animate=False)

    # --- user actions ------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "summary" or self.live is None:
            return
        label = event.row_key.value
        if label in self.selectable() and label != self.selected:
            self._choose(label)
            self.follow = label == self.live.current
            self._refresh(force=True)

    def _choose(self, label: str) -> None:
        """`label` is the row shown under the table from now on."""
        if label != self.selected:
            self.selected = label
            self.selection_changed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        live, key = self.live, event.row_key.value
        if live is None or key is None:
            return
        if event.data_table.id == "summary":
            # Enter on a quant's row goes to its list; Enter there opens a row's detail.
            if key in self.selectable():
                if key != self.selected:
                    self._choose(key)
                    self.follow = key == live.current
                    self._refresh(force=True)
            elif self.selected is not None:
                self.notify(
                    f"{key} is what the other rows are compared with; Enter on a quant's row "
                    f"shows its {self.LIST_NAME}. Showing {self.selected}'s.",
                    markup=False,
                )
            if self.LIST_ID is not None:
                self.query_one(f"#{self.LIST_ID}", DataTable).focus()
        elif event.data_table.id == self.LIST_ID and self.selected is not None:
            self.open_detail(key)

    def add_log_line(self, line: str) -> None:
        """Append one log line to the log panel."""
        self.query_one("#log", RichLog).write(line)

    def action_cancel(self) -> None:
        if self._worker is None or self._worker.is_finished:
            self.notify("No run is going.", severity="warning")
            return
        self._worker.cancel()

    def action_rerun(self) -> None:
        if self._worker is not None and not self._worker.is_finished:
            self._worker.cancel()
        self.start()

    def action_back(self) -> None:
        """Back to the setup view, showing this run's mode and values."""
        if self._worker is not None and not self._worker.is_finished:
            self._worker.cancel()
        options = self.setup_options()
        stack = self.app.screen_stack
        restore = getattr(stack[-2], "restore", None) if len(stack) > 1 else None
        self.dismiss()
        if options is not None and restore is not None:
            restore(options)

    def action_toggle_log(self) -> None:
        self.toggle_class("show-log")

    def action_export(self) -> None:
        """Write the report as JSON (the `--json` document) and as Markdown, never over an
        earlier export."""
        if self.live is None:
            self.notify("Nothing to export yet.", severity="warning")
            return
        report = self.live.current_report()
        stem, markdown = self.report_files(report)
        try:
            json_path, md_path = export_files(
                self.app.export_dir,  # type: ignore[attr-defined]
                stem,
                report.to_json(),
                markdown,
            )
        except GgflipError as exc:
            self.app.push_screen(ErrorScreen(str(exc), title="Export failed"))
            return
        note = "" if report.complete else " (incomplete run: finished models only)"
        self.notify(f"Wrote {json_path} and {md_path}{note}", title="Exported", markup=False)
