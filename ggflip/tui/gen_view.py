"""The generation run view: live per-model table, progress, and the turn list of the selected quant.

Like the multiple-choice run view, one thread worker resolves the `GenOptions` with the CLI's
`resolve_gen_spec`, iterates `generate.run_generation` and only posts messages
(`GenScreen.SpecResolved`, `GenScreen.EngineEvent`, `GenScreen.Generated`); the handlers here
own every state change. `Generated` is cumulative per model, so a newer one may replace an
older one. Enter on a turn opens both generations side by side (`GenDetailScreen`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ggflip.errors import GgflipError
from ggflip.generate.compare import TurnRow
from ggflip.generate.engine import run_generation
from ggflip.generate.events import (
    ChatTemplateDiffers,
    GenBaselineFinished,
    GenFinished,
    GenQuantFinished,
    TurnGenerated,
)
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.generate.spec import GenSpec
from ggflip.reports.generation import render_gen_markdown
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.store.atomic import atomic_write_bytes
from ggflip.tui.gen_cells import (
    GEN_COLUMNS,
    GEN_WIDTHS,
    TURN_COLUMNS,
    TURN_WIDTHS,
    status_text,
    summary_cells,
    turn_cells,
)
from ggflip.tui.gen_detail import GenDetailScreen
from ggflip.tui.gen_live import FILTER_NAMES, GEN_SORTS, SORT_NAMES, LiveGen
from ggflip.tui.views import ErrorScreen
from ggflip.tui.worker_screen import REFRESH_SECONDS, WorkerScreen, failure_message

log = logging.getLogger("ggflip.tui")


class GenScreen(WorkerScreen):
    """A generation comparison running live; each compared turn joins the list as it is done."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel", "Cancel"),
        Binding("r", "rerun", "Re-run"),
        Binding("e", "export", "Export"),
        Binding("d", "shown", "Show"),
        Binding("s", "sort", "Sort"),
        Binding("l", "toggle_log", "Log"),
        Binding("escape", "back", "Setup"),
    ]
    DEFAULT_CSS = """
    GenScreen #summary { height: auto; max-height: 12; }
    GenScreen #turn-title { height: 1; padding: 0 1; background: $boost; }
    GenScreen #turns { height: 1fr; }
    """

    class SpecResolved(Message):
        """The options became a GenSpec (prompts loaded); the run is about to start."""

        def __init__(self, run_id: int, spec: GenSpec) -> None:
            super().__init__()
            self.run_id, self.spec = run_id, spec

    class EngineEvent(Message):
        """An engine event other than a generated turn."""

        def __init__(self, run_id: int, event: object) -> None:
            super().__init__()
            self.run_id, self.event = run_id, event

    class Generated(Message):
        """A model generated turns up to `done` of `total`; `rows`, a quant's compared turns."""

        def __init__(
            self, run_id: int, label: str, done: int, total: int, rows: Sequence[TurnRow] | None
        ) -> None:
            super().__init__()
            self.run_id, self.label, self.done, self.total, self.rows = (
                run_id,
                label,
                done,
                total,
                rows,
            )

        def can_replace(self, message: Message) -> bool:
            # Rows are cumulative, so a later Generated of the same model and run has everything.
            return isinstance(message, GenScreen.Generated) and (
                message.run_id,
                message.label,
            ) == (self.run_id, self.label)

    def __init__(self, options: GenOptions) -> None:
        super().__init__()
        self.options = options
        self.live: LiveGen | None = None
        self.run_id = 0
        self.selected: str | None = None
        self.follow = True
        self.shown = ""
        self.sort = "order"
        self._listed: list[int] = []
        self._listed_key: tuple[object, ...] = ()
        self._refreshed_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading prompts…", id="status")
        yield Vertical(id="progress")
        summary: DataTable[str] = DataTable(id="summary", cursor_type="row", zebra_stripes=True)
        for column, width in zip(GEN_COLUMNS, GEN_WIDTHS):
            summary.add_column(column, key=column, width=width)
        yield summary
        yield Static("", id="turn-title")
        turns: DataTable[str] = DataTable(id="turns", cursor_type="row", zebra_stripes=True)
        for column, width in zip(TURN_COLUMNS, TURN_WIDTHS):
            turns.add_column(column, key=column, width=width)
        yield turns
        yield RichLog(id="log", max_lines=2000, markup=False, wrap=False)
        yield Footer()

    def start(self) -> None:
        """Start (or restart) the generation run in a thread worker."""
        self.run_id += 1
        self.live = None
        self.query_one("#status", Static).update("Loading prompts…")
        self._worker = self._run(self.run_id, self.options)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gen", name="ggflip generate")
    def _run(self, run_id: int, options: GenOptions) -> str:
        """Resolve the options and iterate the engine, posting a message per event; stop when
        cancelled."""
        worker = get_current_worker()
        spec = resolve_gen_spec(options)
        if worker.is_cancelled:
            return "cancelled"
        self.post_message(self.SpecResolved(run_id, spec))
        rows: dict[str, list[TurnRow]] = {}
        # run_generation is a generator: closing it stops between batches and frees the model.
        events = run_generation(spec, self.app.backend_factory(spec.model_set))  # type: ignore[attr-defined]
        try:
            for event in events:
                if worker.is_cancelled:
                    return "cancelled"
                if isinstance(event, TurnGenerated):
                    if event.row is not None:
                        rows.setdefault(event.label, []).append(event.row)
                    self.post_message(
                        self.Generated(
                            run_id, event.label, event.done, event.total, rows.get(event.label)
                        )
                    )
                else:
                    self.post_message(self.EngineEvent(run_id, event))
        finally:
            events.close()
        return "finished"

    # --- messages from the worker -------------------------------------------------------------

    def on_gen_screen_spec_resolved(self, message: SpecResolved) -> None:
        if message.run_id != self.run_id:
            return
        spec = message.spec
        self.live = LiveGen(spec, self.app.clock)  # type: ignore[attr-defined]
        self.sub_title = f"{spec.model_set.name} · {spec.task.name} · {len(spec.units())} turns"
        if self.shown not in self.live.filters:
            self.shown = self.live.filters[0]
            self.sort = "order" if self.live.rule else "kl"
        if self.selected not in self.live.quant_labels:
            self.selected = self.live.quant_labels[0] if self.live.quant_labels else None
        self._build_progress()
        summary = self.query_one("#summary", DataTable)
        summary.clear()
        for label in self.live.models:
            summary.add_row(*([""] * len(GEN_COLUMNS)), key=label)
        self._listed_key = ()
        self._refresh(force=True)

    def on_gen_screen_engine_event(self, message: EngineEvent) -> None:
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
        elif isinstance(event, ChatTemplateDiffers):
            live.template_differs.append(event.label)
            self.notify(
                f"{event.label}: its chat template differs from the baseline's; every model is "
                "asked through the baseline's",
                title="Chat template",
                severity="warning",
            )
        elif isinstance(event, GenBaselineFinished):
            live.baseline_finished(event.summary)
        elif isinstance(event, GenQuantFinished):
            live.quant_finished(event.summary)
        elif isinstance(event, GenFinished):
            live.finished(event.report)
        self._refresh(force=True)

    def on_gen_screen_generated(self, message: Generated) -> None:
        if message.run_id != self.run_id or self.live is None:
            return
        self.live.generated(message.label, message.done, message.total, message.rows)
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
            message = failure_message(event.worker.error, "generation run")
            if self.live is not None:
                self.live.stopped("failed")
                self._refresh(force=True)
            self.query_one("#status", Static).update(Text(f"Failed: {message}"))
            self.app.push_screen(ErrorScreen(message, title="The generation run stopped"))

    # --- drawing -----------------------------------------------------------------------------

    def _build_progress(self) -> None:
        assert self.live is not None
        box = self.query_one("#progress", Vertical)
        box.remove_children()
        rows = []
        for i, model in enumerate(self.live.models.values()):
            role = " (base)" if model.role == "baseline" else ""
            rows.append(
                Horizontal(
                    Label(f"{model.label}{role}", classes="progress-label"),
                    ProgressBar(total=model.total, show_eta=False, id=f"gbar-{i}"),
                    Label("waiting", id=f"gstate-{i}", classes="progress-state"),
                    classes="progress-row",
                )
            )
        box.mount_all(rows)

    def _refresh(self, force: bool = False) -> None:
        """Redraw status, progress, summary and the turn list from the live state."""
        live = self.live
        if live is None:
            return
        self._dirty, self._refreshed_at = False, time.monotonic()
        text = status_text(live)
        if text is not None:
            self.query_one("#status", Static).update(text)
        for i, model in enumerate(live.models.values()):
            try:
                bar = self.query_one(f"#gbar-{i}", ProgressBar)
                state = self.query_one(f"#gstate-{i}", Label)
            except Exception:  # noqa: BLE001 - the rows are mounted on the next refresh
                break
            bar.update(total=model.total, progress=model.done)
            state.update(model.status)
        table = self.query_one("#summary", DataTable)
        now = live.clock()
        for label, model in live.models.items():
            if label in table.rows:
                for column, value in zip(GEN_COLUMNS, summary_cells(live, model, now)):
                    table.update_cell(label, column, Text(value))
        self._draw_turns(force)

    def _draw_turns(self, force: bool) -> None:
        live = self.live
        assert live is not None
        title = self.query_one("#turn-title", Static)
        table = self.query_one("#turns", DataTable)
        if self.selected is None:
            title.update("No quant in this set: nothing to compare.")
            return
        rows = live.turns(self.selected, self.shown, self.sort)
        key = (self.selected, self.shown, self.sort)
        indexes = [r.index for r in rows]
        if force or key != self._listed_key or indexes[: len(self._listed)] != self._listed:
            cursor = table.cursor_row
            table.clear()
            for r in rows:
                table.add_row(*map(Text, turn_cells(live, r)), key=str(r.index))
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        else:
            for r in rows[len(self._listed) :]:
                table.add_row(*map(Text, turn_cells(live, r)), key=str(r.index))
        self._listed, self._listed_key = indexes, key
        done = len(live.models[self.selected].rows)
        title.update(
            f"Turns of {self.selected}: {len(rows)} of {done} compared · {FILTER_NAMES[self.shown]}"
            f" (d) · {SORT_NAMES[self.sort]} (s) · Enter: the two texts"
        )

    def _select(self, label: str) -> None:
        """Show `label`'s turns and put the summary cursor on it."""
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
        live = self.live
        if (
            event.data_table.id != "turns"
            or live is None
            or self.selected is None
            or event.row_key.value is None
        ):
            return
        index = int(event.row_key.value)
        row = next(r for r in live.models[self.selected].rows if r.index == index)
        self.app.push_screen(
            GenDetailScreen(row, live.prompt(row), live.rule, live.baseline_label, self.selected)
        )

    def action_shown(self) -> None:
        if self.live is None:
            return
        filters = self.live.filters
        self.shown = filters[(filters.index(self.shown) + 1) % len(filters)]
        self._refresh(force=True)

    def action_sort(self) -> None:
        self.sort = GEN_SORTS[(GEN_SORTS.index(self.sort) + 1) % len(GEN_SORTS)]
        self._refresh(force=True)

    def action_export(self) -> None:
        """Write the report as JSON (the `--json` document) and as its Markdown summary."""
        if self.live is None:
            self.notify("Nothing to export yet.", severity="warning")
            return
        report = self.live.current_report()
        directory = self.app.export_dir  # type: ignore[attr-defined]
        stem = f"ggflip-{report.set}-{report.task}"
        json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
        try:
            atomic_write_bytes(json_path, (report.to_json() + "\n").encode())
            atomic_write_bytes(md_path, render_gen_markdown(report).encode())
        except GgflipError as exc:
            self.app.push_screen(ErrorScreen(str(exc), title="Export failed"))
            return
        note = "" if report.complete else " (incomplete run: finished models only)"
        self.notify(f"Wrote {json_path} and {md_path}{note}", title="Exported")
