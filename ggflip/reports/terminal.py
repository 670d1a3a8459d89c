"""Human-readable rendering of a Report with rich: a summary table, margin buckets, top flips."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ggflip.choice.report import Report
from ggflip.reports.cells import (
    BUCKET_HEADER,
    CONFIDENCE_HEADER,
    FLIP_HEADER,
    SUBJECT_HEADER,
    SUMMARY_HEADER,
    VERDICT_HEADER,
    bucket_rows,
    confidence_rows,
    legend_line,
    subject_rows,
    summary_rows,
    verdict_rows,
)
from ggflip.reports.cells import flip_rows as flip_rows_of


def _table(title: str, header: list[str], rows: list[list[str]], show_edge: bool = True) -> Table:
    table = Table(title=title, show_edge=show_edge)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def render_report(report: Report, console: Console, flip_rows: int = 10) -> None:
    """Print the summary table, then per quant its margin buckets and largest-KL flips."""
    title = f"ggflip: set {report.set}, task {report.task}, {report.n_questions} questions"
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    console.print(_table(title, SUMMARY_HEADER, summary_rows(report)))
    console.print(legend_line(), style="dim", markup=False, highlight=False)
    if report.floor is not None:
        console.print(
            _table(
                f"Against the noise floor ({report.floor_method})",
                VERDICT_HEADER,
                verdict_rows(report),
                show_edge=False,
            )
        )
    for q in report.quants:
        console.print(
            _table(
                f"{q.label}: flips by top margin", BUCKET_HEADER, bucket_rows(q), show_edge=False
            )
        )
        console.print(
            _table(
                f"{q.label}: flips by the baseline's confidence (top option probability)",
                CONFIDENCE_HEADER,
                confidence_rows(q),
                show_edge=False,
            )
        )
        console.print(
            _table(
                f"{q.label}: the {min(flip_rows, len(q.by_subject))} most damaged subjects",
                SUBJECT_HEADER,
                subject_rows(q, flip_rows),
                show_edge=False,
            )
        )
        flipped = flip_rows_of(q, flip_rows)
        if flipped:
            console.print(
                _table(f"{q.label}: flips, largest KL first", FLIP_HEADER, flipped, show_edge=False)
            )
