"""An attribution's report in the terminal UI: the ranked groups, the recipe measured on held-out
text, and the notes (additivity, bytes, the recipe's commands), the same tables and lines as the
terminal's (`ggflip.reports.attribute`). `ggflip report ATTRIBUTION.json --tui` opens it."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ggflip.reports.attribute import groups_table, notes, verify_table
from ggflip.reports.tables import to_rich


def attribution_content(document: dict[str, Any]) -> RenderableType:
    """The groups table, the verification table (if any) and the notes."""
    parts: list[RenderableType] = [to_rich(groups_table(document), show_edge=False)]
    verify = verify_table(document)
    if verify is not None:
        parts += [Text(""), to_rich(verify, show_edge=False)]
    parts += [Text(""), *(Text(line, style="dim") for line in notes(document))]
    return Group(*parts)


class AttributionScreen(Screen[None]):
    """Where a quant's damage comes from, ranked by KL recovered per extra byte."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "app.quit", "Quit")]

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self.document = document

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(attribution_content(self.document), id="attribution")
        yield Footer()


class AttributionApp(App[None]):
    """The attribution view alone."""

    TITLE = "ggflip attribute"

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self.document = document

    def on_mount(self) -> None:
        self.push_screen(AttributionScreen(self.document))
