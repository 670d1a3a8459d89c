"""A multiple-choice report on the terminal: the tables of `ggflip.reports.cells`, by rich."""

from __future__ import annotations

from rich.console import Console

from ggflip.choice.report import Report
from ggflip.reports.cells import VERDICT_HEADER, legend_terms, quant_tables, summary_table
from ggflip.reports.cells import verdict_rows as verdict_rows_of
from ggflip.reports.tables import Table, legend_line, to_rich


def render_report(report: Report, console: Console, flip_rows: int = 10) -> None:
    """Print the summary table, then per quant its margin buckets and largest-KL flips."""
    title = f"ggflip: set {report.set}, task {report.task}, {report.n_questions} questions"
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    console.print(to_rich(summary_table(report, title)))
    console.print(legend_line(legend_terms()), style="dim", markup=False, highlight=False)
    if report.floor is not None:
        verdicts = Table(
            f"Against the noise floor ({report.floor_method})",
            VERDICT_HEADER,
            verdict_rows_of(report),
        )
        console.print(to_rich(verdicts, show_edge=False))
    for q in report.quants:
        for _, table in quant_tables(q, flip_rows, flip_rows):
            console.print(to_rich(table, show_edge=False))
