"""The KLD run screen (corpus mode): live llama-perplexity statistics per model and a per-token KL
view.

Like the run view, one thread worker iterates `corpus.run_kld` and only posts messages
(`KldScreen.EngineEvent`, `KldScreen.Chunk`); the handlers here own every state change and
cancelling closes the engine's generator. The per-token view shows one chunk's text with each
scored token shaded by the selected quant's KL; n/p move chunk by chunk, [ and ] quant by quant.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ggflip.corpus.engine import partial_kld_report, run_kld
from ggflip.corpus.events import (
    BaselineKldFinished,
    ChunkScored,
    CorpusReady,
    KldFinished,
    KldStarted,
    QuantKldFinished,
)
from ggflip.corpus.setup import KldOptions, resolve_kld_spec
from ggflip.errors import GgflipError
from ggflip.reports.corpus import render_kld_markdown
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.store.atomic import atomic_write_bytes
from ggflip.tui.cells import fit_columns
from ggflip.tui.corpus_live import KLD_COLUMNS, KLD_NARROW, KLD_WIDTHS, LiveKld, kl_legend
from ggflip.tui.corpus_tables import CategoryTable
from ggflip.tui.views import ErrorScreen
from ggflip.tui.worker_screen import REFRESH_SECONDS, WorkerScreen, failure_message

log = logging.getLogger("ggflip.tui")


class KldScreen(WorkerScreen):
    """A corpus run going live: statistics per model, progress, and the text shaded by KL."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "chunk(1)", "Next chunk"),
        Binding("p", "chunk(-1)", "Prev chunk"),
        Binding("right_square_bracket", "quant(1)", "Next quant"),
        Binding("left_square_bracket", "quant(-1)", "Prev quant"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "rerun", "Re-run"),
        Binding("e", "export", "Export"),
        Binding("l", "toggle_log", "Log"),
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    KldScreen #stats { height: auto; max-height: 10; }
    KldScreen #category-title { height: 1; padding: 0 1; background: $boost; display: none; }
    KldScreen #categories { height: auto; max-height: 8; display: none; }
    KldScreen.categories #category-title { display: block; }
    KldScreen.categories #categories { display: block; }
    KldScreen #token-title { height: 1; padding: 0 1; background: $boost; }
    KldScreen #worst { height: 1; padding: 0 1; }
    KldScreen #tokens-box { height: 1fr; padding: 0 1; }
    KldScreen #legend { height: 1; padding: 0 1; }
    """

    class EngineEvent(Message):
        """An engine event other than a scored chunk."""

        def __init__(self, run_id: int, event: object) -> None:
            super().__init__()
            self.run_id, self.event = run_id, event

    class Chunk(Message):
        """One chunk scored by one model."""

        def __init__(self, run_id: int, event: ChunkScored) -> None:
            super().__init__()
            self.run_id, self.event = run_id, event

    def __init__(self, options: KldOptions) -> None:
        super().__init__()
        self.options = options
        self.live: LiveKld | None = None
        self.run_id = 0
        self.selected: str | None = None
        self.chunk = 0
        self.follow = True
        self._refreshed_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Reading the text and checking the models…", id="status")
        yield Vertical(id="progress")
        stats: DataTable[str] = DataTable(id="stats", cursor_type="row", zebra_stripes=True)
        self._columns = fit_columns(self.app.size.width, KLD_COLUMNS, KLD_WIDTHS, KLD_NARROW)
        for column, width in self._columns:
            stats.add_column(column, key=column, width=width)
        yield stats
        yield Static("", id="category-title")
        yield CategoryTable(id="categories")
        yield Static("", id="token-title")
        yield Static("", id="worst")
        with VerticalScroll(id="tokens-box"):
            yield Static("", id="tokens")
        yield Static(kl_legend(), id="legend")
        yield RichLog(id="log", max_lines=2000, markup=False, wrap=False)
        yield Footer()

    def start(self) -> None:
        """Start (or restart) the corpus run in a thread worker."""
        self.run_id += 1
        self.live = None
        self.query_one("#status", Static).update("Reading the text and checking the models…")
        self._worker = self._run(self.run_id, self.options)

    @work(thread=True, exclusive=True, exit_on_error=False, group="kld", name="ggflip kld")
    def _run(self, run_id: int, options: KldOptions) -> str:
        """Build the spec and iterate the engine, posting a message per event; stop when
        cancelled."""
        worker = get_current_worker()
        spec = resolve_kld_spec(options)
        if worker.is_cancelled:
            return "cancelled"
        # run_kld is a generator: closing it stops between chunks, frees the model and a temporary
        # baseline.
        events = run_kld(spec, self.app.backend_factory(spec.model_set))  # type: ignore[attr-defined]
        try:
            for event in events:
                if worker.is_cancelled:
                    return "cancelled"
                if isinstance(event, ChunkScored):
                    self.post_message(self.Chunk(run_id, event))
                else:
                    self.post_message(self.EngineEvent(run_id, event))
        finally:
            events.close()
        return "finished"

    # --- messages from the worker -------------------------------------------------------------

    def on_kld_screen_engine_event(self, message: EngineEvent) -> None:
        if message.run_id != self.run_id:
            return
        event = message.event
        if isinstance(event, KldStarted):
            self.live = LiveKld(event)
            self.sub_title = f"{event.set_name} · {event.source} · ctx {event.ctx}"
            if self.selected not in self.live.quant_labels:
                self.selected = self.live.quant_labels[0] if self.live.quant_labels else None
            self._build_tables()
        live = self.live
        if live is None:
            return
        if isinstance(event, ModelLoading):
            live.status(event.label, "loading")
            if event.role == "quant" and self.follow:
                self._select(event.label)
        elif isinstance(event, ModelLoaded):
            live.status(event.label, "scoring")
        elif isinstance(event, BaselineFromCache):
            live.status(event.label, "cached")
        elif isinstance(event, CorpusReady):
            live.corpus_ready(event)
            self.set_class(len(live.texts) > 1, "categories")
            self.query_one(CategoryTable).build(live)
        elif isinstance(event, BaselineKldFinished):
            live.baseline_finished(event.summary)
        elif isinstance(event, QuantKldFinished):
            live.quant_finished(event.summary)
        elif isinstance(event, KldFinished):
            live.finished(event.report)
        self._refresh()

    def on_kld_screen_chunk(self, message: Chunk) -> None:
        if message.run_id != self.run_id or self.live is None:
            return
        self.live.chunk_scored(message.event)
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
                "Run cancelled; the quants that finished are kept (e: export).", title="Cancelled"
            )
            self._refresh()
        elif event.state == WorkerState.ERROR:
            message = failure_message(event.worker.error, "kld run")
            if self.live is not None:
                self.live.stopped("failed")
                self._refresh()
            self.query_one("#status", Static).update(Text(f"Failed: {message}"))
            self.app.push_screen(ErrorScreen(message, title="The corpus run stopped"))

    # --- drawing -----------------------------------------------------------------------------

    def _build_tables(self) -> None:
        assert self.live is not None
        box = self.query_one("#progress", Vertical)
        box.remove_children()
        rows = []
        for i, model in enumerate(self.live.models.values()):
            role = " (base)" if model.role == "baseline" else ""
            rows.append(
                Horizontal(
                    Label(f"{model.label}{role}", classes="progress-label"),
                    ProgressBar(total=None, show_eta=False, id=f"kbar-{i}"),
                    Label("waiting", id=f"kstate-{i}", classes="progress-state"),
                    classes="progress-row",
                )
            )
        box.mount_all(rows)
        self._fill_stats()

    def _fill_stats(self) -> None:
        assert self.live is not None
        table = self.query_one("#stats", DataTable)
        table.clear()
        for label in self.live.models:
            table.add_row(*([""] * len(self._columns)), key=label)

    def on_resize(self, event: events.Resize) -> None:
        columns = fit_columns(event.size.width, KLD_COLUMNS, KLD_WIDTHS, KLD_NARROW)
        if columns == self._columns:
            return
        self._columns = columns
        table = self.query_one("#stats", DataTable)
        table.clear(columns=True)
        for column, width in columns:
            table.add_column(column, key=column, width=width)
        if self.live is not None:
            self._fill_stats()
            self._refresh()

    def _refresh(self) -> None:
        """Redraw status, progress, statistics and the per-token view from the live state."""
        live = self.live
        if live is None:
            return
        self._dirty, self._refreshed_at = False, time.monotonic()
        self.query_one("#status", Static).update(Text(self._status_text()))
        for i, model in enumerate(live.models.values()):
            try:
                bar = self.query_one(f"#kbar-{i}", ProgressBar)
                state = self.query_one(f"#kstate-{i}", Label)
            except Exception:  # noqa: BLE001 - the rows are mounted on the next refresh
                break
            bar.update(total=model.total or None, progress=model.done)
            state.update(model.status)
        table = self.query_one("#stats", DataTable)
        shown = {column for column, _ in self._columns}
        for label in live.models:
            if label in table.rows:
                for column, value in zip(KLD_COLUMNS, live.cells(label)):
                    if column in shown:
                        table.update_cell(label, column, value)
        if len(live.texts) > 1 and self.selected is not None:
            self.query_one("#category-title", Static).update(
                Text(f"Per text (category), {self.selected}: each text chunked on its own")
            )
            self.query_one(CategoryTable).draw(live, self.selected)
        self._draw_tokens()

    def _status_text(self) -> str:
        live = self.live
        assert live is not None
        if live.state == "running" and live.current:
            model = live.models[live.current]
            verb = "Loading" if model.status == "loading" else "Scoring"
            return (
                f"{verb} {model.label} ({model.role}): chunk {model.done}/{model.total} of "
                f"{live.ctx} tokens"
            )
        if live.state == "finished":
            return "Finished: every model scored. n/p: chunk · [/]: quant · e: export · r: re-run"
        if live.state == "cancelled":
            return "Cancelled: the quants that finished are kept. e: export · r: re-run"
        if live.state == "failed":
            return "Failed."
        return "Reading the text and checking the models…"

    def _draw_tokens(self) -> None:
        live = self.live
        assert live is not None
        title = self.query_one("#token-title", Static)
        n = live.n_chunks
        if self.selected is None:
            title.update("No quant in this set: nothing to compare.")
            return
        scored = self.chunk in live.models[self.selected].kl
        note = "" if scored else f" (not scored by {self.selected} yet)"
        text = live.text_of(self.chunk)
        where = (
            f" · {text.name} chunk {self.chunk - text.first_chunk + 1}/{text.n_chunks}"
            if text is not None and len(live.texts) > 1
            else ""
        )
        title.update(
            Text(
                f"Per-token KL of {self.selected} · chunk {self.chunk + 1}/{n}{where}{note} · n/p: "
                "chunk · [/]: quant"
            )
        )
        worst = live.worst_tokens(self.selected, self.chunk)
        self.query_one("#worst", Static).update(Text(f"largest KL: {worst}" if worst else ""))
        self.query_one("#tokens", Static).update(live.token_text(self.selected, self.chunk))

    def _select(self, label: str) -> None:
        """Show `label`'s per-token view and put the statistics cursor on it."""
        self.selected = label
        table = self.query_one("#stats", DataTable)
        if label in table.rows:
            table.move_cursor(row=table.get_row_index(label), animate=False)

    # --- user actions ------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "stats" or self.live is None:
            return
        label = event.row_key.value
        if label in self.live.quant_labels and label != self.selected:
            self.selected = label
            self.follow = label == self.live.current
            self._refresh()

    def action_chunk(self, step: int) -> None:
        if self.live is None or self.live.n_chunks == 0:
            return
        self.chunk = (self.chunk + step) % self.live.n_chunks
        self._draw_tokens()
        self.query_one("#tokens-box", VerticalScroll).scroll_home(animate=False)

    def action_quant(self, step: int) -> None:
        if self.live is None or not self.live.quant_labels:
            return
        labels = self.live.quant_labels
        index = labels.index(self.selected) if self.selected in labels else 0
        self.follow = False
        self._select(labels[(index + step) % len(labels)])
        self._refresh()

    def action_export(self) -> None:
        """Write the report as JSON (the `ggflip kld --json` document) and as Markdown."""
        live = self.live
        if live is None:
            self.notify("Nothing to export yet.", severity="warning")
            return
        report = live.report
        if report is None:
            spec = resolve_kld_spec(self.options)
            baseline = live.models[live.baseline_label].baseline
            report = partial_kld_report(
                spec,
                baseline,
                [m.final for m in live.models.values() if m.final is not None],
                live.n_chunks,
                live.models[live.baseline_label].done,
                live.texts,
            )
        path = self.app.export_dir / f"ggflip-kld-{report.set}.json"  # type: ignore[attr-defined]
        try:
            atomic_write_bytes(path, (report.to_json() + "\n").encode())
            atomic_write_bytes(path.with_suffix(".md"), render_kld_markdown(report).encode())
        except GgflipError as exc:
            self.app.push_screen(ErrorScreen(str(exc), title="Export failed"))
            return
        note = "" if report.complete else " (incomplete run: finished quants only)"
        self.notify(
            f"Wrote {path} and {path.with_suffix('.md').name}{note}", title="Exported", markup=False
        )
