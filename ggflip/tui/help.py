"""The `?` screen: what each number of the tables means, and the keys of each view."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ggflip.reports import choice as report_choice
from ggflip.scoring import metrics
from ggflip.tui import choice_cells, columns, corpus_tables, gen_cells

KEYS = (
    ("Enter", "on a quant's row: its flips; on a flip: the question's detail"),
    ("d / f / s", "flip list: direction filter, subject filter, sort order"),
    ("m", "flip rate per baseline top-margin bucket"),
    ("c / r", "cancel (between batches; finished models are kept) / re-run"),
    ("e", "export the JSON report and a Markdown summary (never over an earlier export)"),
    ("l", "llama.cpp's log"),
    ("Esc / q", "back to the setup view / quit"),
)
TABLE_TERMS = (
    ("c→i/i→c", "answers that went correct→incorrect / incorrect→correct"),
    ("margin", "the baseline's best option probability minus its second best"),
)


def legend_rows() -> list[tuple[str, str]]:
    """(header, legend) of every registered metric a run view's table shows, each once: the
    multiple-choice, generation and corpus views' own columns, then the appended ones, then the
    rest of the multiple-choice report's summary (McNemar p, acceptance)."""
    names: list[str] = []
    for mode, own in (
        ("choice", choice_cells.OWN_COLUMNS),
        ("generate", gen_cells.OWN_COLUMNS),
        ("corpus", corpus_tables.OWN_COLUMNS),
    ):
        names += [name for _, _, name in own if name]
        names += [m.name for m in columns.appended(mode, own)]
    names += [c.metric for c in report_choice.SUMMARY_COLUMNS if c.metric]
    entries = [metrics.metric(name) for name in dict.fromkeys(names)]
    return [(m.short, m.legend) for m in entries]


class HelpScreen(ModalScreen[None]):
    """The legend of the run view's numbers and its keys."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100%; max-width: 110; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._content(), id="help")
        yield Footer()

    @staticmethod
    def _content() -> Group:
        def table(title: str, rows: tuple[tuple[str, str], ...]) -> Table:
            grid = Table(box=None, show_header=False, pad_edge=False, title=title)
            grid.title_justify = "left"
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(ratio=1)
            for term, meaning in rows:
                grid.add_row(term, meaning)
            return grid

        return Group(
            table("What the numbers mean", (*legend_rows(), *TABLE_TERMS)),
            Text(""),
            table("Keys", KEYS),
        )
