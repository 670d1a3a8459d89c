"""The KLD run screen's per-text table: one row per text (category) of the corpus, for the quant
selected above it, live while it is scored and the engine's own numbers once it is done."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from ggflip.tui.corpus_live import CATEGORY_COLUMNS, CATEGORY_WIDTHS, LiveKld


class CategoryTable(DataTable[str]):
    """Per-text statistics of one quant (`LiveKld.category_cells`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="none", **kwargs)
        for column, width in zip(CATEGORY_COLUMNS, CATEGORY_WIDTHS):
            self.add_column(column, key=column, width=width)

    def build(self, live: LiveKld) -> None:
        """One empty row per text of the corpus, in run order."""
        self.clear()
        for text in live.texts:
            self.add_row(*([""] * len(CATEGORY_COLUMNS)), key=text.name)

    def draw(self, live: LiveKld, label: str) -> None:
        """Fill each text's row with quant `label`'s statistics so far."""
        for text in live.texts:
            if text.name in self.rows:
                for column, value in zip(CATEGORY_COLUMNS, live.category_cells(label, text)):
                    self.update_cell(text.name, column, value)
