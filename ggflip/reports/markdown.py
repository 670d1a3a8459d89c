"""A report as a Markdown summary: the summary table, flips per top-margin bucket, the largest-KL
flips.

Plain text with no terminal dependency, so the TUI's export and any other front end write the
same document. Rates are shown in percent, KL in nats.
"""

from __future__ import annotations

from ggflip.choice.report import QuantSummary, Report
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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _quant_section(q: QuantSummary, flip_rows: int) -> list[str]:
    lines = [
        "",
        f"## {q.label}",
        "",
        f"`{q.path}`: {q.n} questions, {q.n_flips_lost + q.n_flips_gained} flips.",
        "",
    ]
    lines += ["Flips by the baseline's top margin:", ""] + _table(BUCKET_HEADER, bucket_rows(q))
    lines += ["", "Flips by the baseline's confidence (its top option probability):", ""]
    lines += _table(CONFIDENCE_HEADER, confidence_rows(q))
    lines += ["", "Subjects, the most damaged first (flip rate, then KL):", ""]
    lines += _table(SUBJECT_HEADER, subject_rows(q))
    flipped = flip_rows_of(q, flip_rows)
    if flipped:
        lines += ["", "Flips, largest KL first:", ""] + _table(FLIP_HEADER, flipped)
    return lines


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
    lines += _table(SUMMARY_HEADER, summary_rows(report, show_cached=False))
    lines += ["", f"_{legend_line()}._"]
    if report.floor is not None:
        lines += ["", f"Noise floor: {report.floor_method}.", ""]
        lines += _table(VERDICT_HEADER, verdict_rows(report))
    for q in report.quants:
        lines += _quant_section(q, flip_rows)
    return "\n".join(lines) + "\n"
