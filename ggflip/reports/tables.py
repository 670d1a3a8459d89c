"""The one table writer per format (rich, Markdown, HTML) and the columns every report declares.

A report module declares its tables as `Column`s over items (a quant's summary object or its
JSON dict); `metric_column` makes a column from a registered metric (its label and format), and
`summary_table` appends the registered metrics that a mode's tables do not place themselves
(`ggflip.scoring.metrics.appended_columns`). The writers below turn a `Table` into a rich table,
Markdown lines or an HTML fragment; no report module formats a table itself.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table as RichTable

from ggflip.scoring import metrics
from ggflip.tasks.calibration import CalibrationOverlap, known_set_note


@dataclass(frozen=True)
class Column:
    """A table column: its header and the cell text of one item."""

    label: str
    cell: Callable[[Any], str]
    metric: str = ""  # the registered metric it shows, if any


@dataclass(frozen=True)
class Table:
    """A table ready to write: title, header and rows of cell text."""

    title: str
    header: list[str]
    rows: list[list[str]]


def value_of(item: Any, name: str) -> Any:
    """A metric's value in a summary: a JSON dict's key, an object's field or its `extra`."""
    if isinstance(item, Mapping):
        return item.get(name)
    if hasattr(item, name):
        return getattr(item, name)
    return getattr(item, "extra", {}).get(name)


def metric_column(name: str, label: str | None = None, short: bool = False) -> Column:
    """A column of a registered metric in its own format (`label` overrides its header; `short`
    takes its TUI label)."""
    entry = metrics.metric(name)
    header = label or (entry.short if short else entry.label)
    return Column(header, lambda item: entry.cell(value_of(item, name)), name)


def with_appended(mode: str, columns: Sequence[Column], short: bool = False) -> list[Column]:
    """`columns`, then a column for every registered metric of `mode` they do not place."""
    placed = [c.metric for c in columns if c.metric]
    extra = [metric_column(m.name, short=short) for m in metrics.appended_columns(mode, placed)]
    return [*columns, *extra]


def summary_table(
    title: str,
    mode: str,
    columns: Sequence[Column],
    items: Iterable[Any],
    lead: Sequence[Sequence[str]] = (),
) -> Table:
    """A per-model table of `mode`: `lead` rows (the baseline's, padded with blanks), then one
    row per item, the registered metrics the columns do not place appended."""
    shown = with_appended(mode, columns)
    rows = [[*row, *[""] * (len(shown) - len(row))] for row in lead]
    rows += [[column.cell(item) for column in shown] for item in items]
    return Table(title, [c.label for c in shown], rows)


def legend(mode: str, columns: Sequence[Column]) -> list[tuple[str, str]]:
    """(header, legend) of each metric column of a `mode` table, appended ones included."""
    return [
        (c.label, metrics.metric(c.metric).legend) for c in with_appended(mode, columns) if c.metric
    ]


def legend_line(terms: Sequence[tuple[str, str]]) -> str:
    """A legend as one line of `term: meaning` pairs."""
    return " · ".join(f"{term}: {meaning}" for term, meaning in terms)


def to_rich(table: Table, show_edge: bool = True) -> RichTable:
    """The table for a terminal: the first column left-aligned, the others right."""
    out = RichTable(title=table.title or None, show_edge=show_edge)
    for i, column in enumerate(table.header):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> list[str]:
    """The table as Markdown lines (its title is the caller's heading, not written here)."""
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.header) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
    ]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]


def to_html(table: Table) -> str:
    """The table as an HTML fragment (cells escaped)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:.5em}"
    "img{max-width:520px}figcaption{text-align:center;color:#555;max-width:520px}"
)


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page around `body`."""
    esc = html.escape(title)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc}</title>"
        f"<style>{HTML_STYLE}</style></head><body><h1>{esc}</h1>{body}</body></html>\n"
    )


def html_figures(figures: Mapping[str, str]) -> str:
    """Base64 PNG figures by title as `<figure>` elements."""
    esc = html.escape
    return "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, png in figures.items()
    )


def imatrix_text(provenance: Mapping[str, Any]) -> str:
    """`imatrix.gguf (dataset calibration_datav3.txt, 125 chunks, 196 entries)`; "" for none."""
    if not provenance:
        return ""
    details = [f"dataset {provenance['dataset']}"] if "dataset" in provenance else []
    for key, unit in (("chunks_count", "chunks"), ("entries_count", "entries")):
        if key in provenance:
            details.append(f"{provenance[key]} {unit}")
    name = str(provenance.get("file", "an imatrix"))
    return name + (f" ({', '.join(details)})" if details else "")


def provenance_lines(quants: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One line per quant made with an importance matrix: its provenance from the GGUF."""
    lines = []
    for label, imatrix in quants:
        if imatrix:
            note = known_set_note(str(imatrix.get("dataset", "")))
            lines.append(
                f"{label}: quantized with imatrix {imatrix_text(imatrix)}"
                + (f" ({note})" if note else "")
            )
    return lines


def calibration_lines(overlaps: Iterable[CalibrationOverlap]) -> list[str]:
    """A line per `--calibration` file: the share of the evaluation in it, and the warning."""
    return [overlap.line() for overlap in overlaps]


def model_lines(quants: Iterable[Any]) -> list[str]:
    """What a report says about how each quant was made and run beyond its file name: its llama
    settings unlike the baseline's, then its imatrix provenance (summary objects or JSON dicts)."""
    items = list(quants)
    settings = [(value_of(q, "label"), value_of(q, "settings") or {}) for q in items]
    imatrix = [(value_of(q, "label"), value_of(q, "imatrix") or {}) for q in items]
    return settings_lines(settings) + provenance_lines(imatrix)


def settings_lines(quants: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One line per quant whose llama settings differ from the baseline's (a quant of the same
    file under a quantized KV cache, flash attention, GPU layers...): every differing setting."""
    lines = []
    for label, settings in quants:
        if settings:
            shown = ", ".join(f"{name} = {_setting(value)}" for name, value in settings.items())
            lines.append(f"{label}: llama settings unlike the baseline's: {shown}")
    return lines


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
