"""The KLD run screen's tables: the per-model statistics table's columns and cells (the view's own
from `LiveKld.cells`, then the registered corpus metrics it does not place, from the quant's
finished summary), and the per-text table: one row per text (category) of the corpus, for the
quant selected above it, live while it is scored and the engine's own numbers once it is done."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from ggflip.corpus.report import MODE
from ggflip.tui.columns import appended, appended_cells, appended_pairs
from ggflip.tui.corpus_live import (
    CATEGORY_COLUMNS,
    CATEGORY_WIDTHS,
    KLD_COLUMNS,
    KLD_WIDTHS,
    LiveKld,
)

# The registered metric each of the statistics table's own columns shows (the last, chunks, none).
KLD_METRICS = (
    "",
    "ppl",
    "ppl_ratio",
    "kl_mean",
    "kl_median",
    "kl_p99",
    "kl_max",
    "same_top",
    "dp_rms",
    "",
)
OWN_COLUMNS = tuple(zip(KLD_COLUMNS[:-1], KLD_WIDTHS[:-1], KLD_METRICS[:-1]))


def kld_columns() -> list[tuple[str, int]]:
    """Every (column, width) of the statistics table: its own, then the appended metrics, then
    chunks."""
    own = [(c, w) for c, w, _ in OWN_COLUMNS]
    return [*own, *appended_pairs(MODE, OWN_COLUMNS), (KLD_COLUMNS[-1], KLD_WIDTHS[-1])]


def kld_cells(live: LiveKld, label: str) -> list[str]:
    """One row of the statistics table, in `kld_columns` order; an appended metric shows once the
    quant is finished (the baseline's row leaves them blank)."""
    own = live.cells(label)
    model = live.models[label]
    if model.role == "baseline":
        extra = [""] * len(appended(MODE, OWN_COLUMNS))
    else:
        final = model.summary.to_dict() if model.summary is not None else None
        extra = appended_cells(MODE, OWN_COLUMNS, final)
    return [*own[:-1], *extra, own[-1]]


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
