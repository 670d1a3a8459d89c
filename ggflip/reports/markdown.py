"""A multiple-choice report as Markdown: the tables of `ggflip.reports.cells`, written as
Markdown.

Plain text with no terminal dependency, so the TUI's export and any other front end write the
same document. Rates are shown in percent, KL in nats.
"""

from __future__ import annotations

from ggflip.choice.report import Report
from ggflip.reports.cells import VERDICT_HEADER, legend_terms, quant_tables, summary_table
from ggflip.reports.cells import verdict_rows as verdict_rows_of
from ggflip.reports.tables import Table, legend_line, to_markdown


def render_markdown(report: Report, flip_rows: int = 10) -> str:
    """The report as a Markdown document (a summary, not the per-question data: that is the
    JSON)."""
    title = f"# ggflip: set {report.set}, task {report.task}"
    lines = [title, ""]
    lines.append(
        f"{report.selection or f'{report.n_questions} questions'} from `{report.source}`, "
        f"prompt `{report.prompt_version}`"
        + (
            "."
            if report.complete
            else "; **incomplete: the run stopped early**, only finished models are listed."
        )
    )
    if report.skipped_rows:
        lines.append(f"{len(report.skipped_rows)} malformed rows skipped.")
    lines += [""]
    lines += to_markdown(summary_table(report, show_cached=False))
    lines += ["", f"_{legend_line(legend_terms())}._"]
    if report.floor is not None:
        lines += ["", f"Noise floor: {report.floor_method}.", ""]
        lines += to_markdown(Table("", VERDICT_HEADER, verdict_rows_of(report)))
    for q in report.quants:
        flips = q.n_flips_lost + q.n_flips_gained
        lines += ["", f"## {q.label}", "", f"`{q.path}`: {q.n} questions, {flips} flips."]
        for lead_in, table in quant_tables(q, None, flip_rows):
            lines += ["", lead_in, ""] + to_markdown(table)
    return "\n".join(lines) + "\n"
