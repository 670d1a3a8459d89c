"""Generation's adapter to the one run screen: the per-model columns, the turn list of the
selected quant, both generations of a turn side by side (`GenDetailScreen`), resuming.

Each compared turn joins the list as it is done; d and s filter and order it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from ggflip.backends.base import BackendFactory
from ggflip.choice.setup import RunOptions
from ggflip.generate.compare import TurnRow
from ggflip.generate.engine import run_generation
from ggflip.generate.report import GenReport
from ggflip.generate.resume import stored_turns
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.generate.spec import GenSpec
from ggflip.reports.generation import render_gen_markdown
from ggflip.tui import help
from ggflip.tui.gen_cells import (
    TURN_COLUMNS,
    gen_columns,
    gen_table_columns,
    summary_cells,
    turn_cells,
    turn_table_columns,
)
from ggflip.tui.gen_detail import GenDetailScreen
from ggflip.tui.gen_live import (
    FILTER_COUNTS,
    FILTER_NAMES,
    GEN_SORTS,
    SORT_NAMES,
    GenModel,
    LiveGen,
    setup_options,
)
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.run_widgets import ModelTable, run_bindings


class GenScreen(RunScreen[GenOptions, GenSpec, LiveGen]):
    """A generation comparison running live."""

    BINDINGS: ClassVar[list[BindingType]] = run_bindings(
        Binding("d", "shown", "Show"), Binding("s", "sort", "Sort")
    )
    DEFAULT_CSS = """
    GenScreen #turn-title { height: 1; padding: 0 1; background: $boost; }
    GenScreen #turns { height: 1fr; }
    """
    STARTING = "Loading prompts…"
    VERB = "Generating"
    FINISHED = "Finished. Enter: both texts · e: export · r: re-run · ?: help"
    WHAT = "generation run"
    HELP_MODE = help.GENERATE
    LIST_ID = "turns"
    LIST_NAME = "turns"

    def __init__(self, options: GenOptions) -> None:
        super().__init__(options)
        self.shown = ""
        self.sort = "order"
        self._listed: list[int] = []
        self._listed_key: tuple[object, ...] = ()

    def resolve(self, options: GenOptions) -> GenSpec:
        return resolve_gen_spec(options)

    def make_fold(self, spec: GenSpec) -> LiveGen:
        return LiveGen(spec, self.app.clock)  # type: ignore[attr-defined]

    def engine(self, spec: GenSpec, factory: BackendFactory) -> Iterator[object]:
        return run_generation(spec, factory)

    def stored_progress(self, spec: GenSpec, factory: BackendFactory) -> tuple[dict[str, int], int]:
        return stored_turns(spec, factory)

    def resumed(self, options: GenOptions, resume: bool) -> GenOptions:
        return dataclasses.replace(options, resume=resume)

    def subtitle(self, spec: GenSpec) -> str:
        return f"{spec.model_set.name} · {spec.task.name} · {len(spec.units())} turns"

    def columns(self) -> list[tuple[str, int]]:
        return gen_columns()

    def table_columns(self, width: int) -> list[tuple[str, int]]:
        return gen_table_columns(width)

    def model_cells(self, label: str, now: float) -> Sequence[str]:
        assert self.live is not None
        return summary_cells(self.live, self.live.models[label], now)

    def compose_view(self) -> ComposeResult:
        yield Static("", id="turn-title")
        yield ModelTable(turn_table_columns(self.app.size.width), id="turns")

    def view_resized(self, width: int) -> bool:
        return self.query_one("#turns", ModelTable).fit(turn_table_columns(width), [])

    def run_started(self) -> None:
        assert self.live is not None
        if self.shown not in self.live.filters:
            self.shown = self.live.filters[0]
            self.sort = "order" if self.live.rule else "kl"
        self._listed_key = ()

    def progress_text(self, model: GenModel) -> str:
        if model.done == 0 and model.status == "generating" and self.live is not None:
            batch = self.live.spec.batch_size
            return f"turn 0/{model.total} ({batch} generate together; counted when they end)"
        return f"turn {model.done}/{model.total}"

    def setup_options(self) -> RunOptions:
        return setup_options(self.options)

    def report_files(self, report: GenReport) -> tuple[str, str]:
        return f"ggflip-{report.set}-{report.task}", render_gen_markdown(report)

    def draw_view(self, force: bool) -> None:
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
                table.add_row(*self._turn_row(r), key=str(r.index))
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        else:
            for r in rows[len(self._listed) :]:
                table.add_row(*self._turn_row(r), key=str(r.index))
        self._listed, self._listed_key = indexes, key
        done = len(live.models[self.selected].rows)
        title.update(
            f"Turns of {self.selected}: {len(rows)} {FILTER_COUNTS[self.shown]} of {done} compared"
            f" · {FILTER_NAMES[self.shown]} (d) · {SORT_NAMES[self.sort]} (s) · Enter: both texts"
        )

    def _turn_row(self, row: TurnRow) -> list[Text]:
        """A turn's cells in the columns the list shows at this width."""
        assert self.live is not None
        shown = {column for column, _ in self.query_one("#turns", ModelTable).columns_shown}
        cells = zip(TURN_COLUMNS, turn_cells(self.live, row))
        return [Text(cell) for column, cell in cells if column in shown]

    def open_detail(self, key: str) -> None:
        live = self.live
        assert live is not None and self.selected is not None
        row = next(r for r in live.models[self.selected].rows if r.index == int(key))
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
