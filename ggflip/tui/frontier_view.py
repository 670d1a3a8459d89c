"""The `t` screen: the memory–damage frontier of the run in view (its finished models), the
same table and lines as the terminal's (`ggflip.reports.frontier`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ggflip.reports.frontier import frontier_lines, frontier_table
from ggflip.reports.tables import to_rich


def frontier_content(frontier: Mapping[str, Any]) -> RenderableType:
    """The frontier table and its lines; without a placed model, why none could be placed."""
    if not frontier["points"]:
        reasons = [f"{m['label']}: {m['reason']}" for m in frontier["left_out"]]
        return Text("\n".join(["No model with a known memory and damage yet.", *reasons]))
    lines = [Text(line, style="dim") for line in frontier_lines(frontier)]
    return Group(to_rich(frontier_table(frontier), show_edge=False), Text(""), *lines)


class FrontierScreen(ModalScreen[None]):
    """Which file to run: memory against damage, the frontier marked."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,t,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    FrontierScreen { align: center middle; }
    FrontierScreen > VerticalScroll {
        width: 100%; max-width: 130; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, frontier: Mapping[str, Any]) -> None:
        super().__init__()
        self.frontier = frontier

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(frontier_content(self.frontier), id="frontier")
        yield Footer()
