"""The "where it hurts" view: one quant's subjects, most damaged first, and its confidence buckets.

Both tables come from the engine's own breakdown (`ggflip.choice.report.by_subject` and
`confidence_buckets`) over the rows scored so far, so they match the exported report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ggflip.choice.answers import QuestionRow
from ggflip.choice.report import by_subject, confidence_buckets
from ggflip.tui.run_widgets import footer
from ggflip.tui.views import LIVE_SECONDS, bar


def damage_table(title: str, first: str, groups: Sequence[dict[str, Any]]) -> Table:
    """Flip rate bars (one scale: the largest rate), with n, Wilson interval, changes and KL."""
    peak = max((float(g["flip_rate"]) for g in groups), default=0.0) or 1.0
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in (first, "flip rate", "", "95% CI", "flips/n", "changes", "KL mean"):
        table.add_column(column, justify="left" if column in (first, "flip rate") else "right")
    for g in groups:
        low, high = g["flip_rate_ci"]
        kl = g["kl_mean"]
        table.add_row(
            str(g.get("name", f"{g.get('lo', 0):.2f}–{g.get('hi', 0):.2f}")),
            Text(bar(float(g["flip_rate"]) / peak, 20), style="red"),
            f"{100 * g['flip_rate']:5.1f}%",
            f"{100 * low:.0f}–{100 * high:.0f}%",
            f"{g['flips']}/{g['n']}",
            f"{100 * g['answer_changes']:.1f}%",
            "–" if kl is None or math.isnan(kl) else f"{kl:.4f}",
        )
    return table


class DamageScreen(ModalScreen[None]):
    """One quant's damage per subject (most damaged first) and per baseline-confidence bucket."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,w,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    DamageScreen { align: center middle; }
    DamageScreen > Vertical { width: 100%; height: 100%; background: $surface; }
    """

    def __init__(self, label: str, rows: Callable[[], Sequence[QuestionRow]]) -> None:
        super().__init__()
        self.label, self.rows_now = label, rows
        self.rows = list(rows())

    def content(self) -> RenderableType:
        """Both tables, or a line saying nothing is scored yet."""
        if not self.rows:
            return Text(f"{self.label}: no question scored yet.")
        buckets = [g for g in confidence_buckets(self.rows) if g["n"]]
        return Group(
            damage_table(
                f"{self.label}: subjects, most damaged first ({len(self.rows)} questions)",
                "subject",
                by_subject(self.rows),
            ),
            Text(""),
            damage_table(
                f"{self.label}: by the baseline's confidence (top option probability)",
                "confidence",
                buckets,
            ),
        )

    def compose(self) -> ComposeResult:
        with Vertical(), VerticalScroll():
            yield Static(self.content(), id="damage")
        yield footer()

    def on_mount(self) -> None:
        self.set_interval(LIVE_SECONDS, self._follow_run)

    def _follow_run(self) -> None:
        """Redraw when the quant scored more questions (the view follows the run live)."""
        rows = self.rows_now()
        if len(rows) != len(self.rows):
            self.rows = list(rows)
            self.query_one("#damage", Static).update(self.content())
