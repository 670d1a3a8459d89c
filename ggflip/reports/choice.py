"""A multiple-choice report as tables, declared once, and written on the terminal
(`render_report`, by rich) and as Markdown (`render_markdown`); the HTML page (`pages`) writes the
same tables, all with `ggflip.reports.tables`.

Rates are shown in percent, KL in nats with significant digits; answers as letters. Markdown is
plain text with no terminal dependency, so the TUI's export and any other front end write the same
document.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from ggflip.choice.answers import FLIP_LOST
from ggflip.choice.report import QuantSummary, Report
from ggflip.reports import notes, tables
from ggflip.reports.equivalence import equivalence_table
from ggflip.reports.frontier import frontier_markdown, render_frontier
from ggflip.reports.tables import (
    Column,
    Table,
    calibration_lines,
    legend,
    legend_line,
    metric_column,
    model_lines,
    to_markdown,
    to_rich,
)
from ggflip.scoring.formats import DASH, num, pct, sig, unknown
from ggflip.scoring.stats import p_text
from ggflip.tasks.questions import LETTERS

MODE = "choice"
SUMMARY_COLUMNS = [
    Column("model", lambda q: q.label),
    *(
        metric_column(name)
        for name in (
            "accuracy",
            "delta_accuracy",
            "flips",
            "n_flips_lost",
            "n_flips_gained",
            "answer_changes",
            "mcnemar_p",
            "kl_mean",
            "kl_p99",
            "same_top",
            "acceptance_mean",
            "acceptance_p10",
            "seconds",
        )
    ),
]
VERDICT_HEADER = [
    "model",
    "verdict",
    "flips vs floor",
    "KL mean vs floor",
    "flips p",
    "KL p",
    "why",
]
SUBJECT_HEADER = ["subject", "n", "flips", "flip rate [95% CI]", "changes", "KL mean", "accept"]
CONFIDENCE_HEADER = ["confidence", "n", "flips", "flip rate [95% CI]", "changes", "KL mean"]
BUCKET_HEADER = ["margin", "n", "flips", "flip rate"]
FLIP_HEADER = ["id", "subject", "gold", "base→quant", "direction", "KL", "margin"]


def _models(report: Report) -> list[QuantSummary]:
    """The floor (if any), then each quant."""
    return [*([report.floor] if report.floor else []), *report.quants]


def legend_terms() -> list[tuple[str, str]]:
    """What each metric column of the summary table means (the legend line and the TUI's `?`)."""
    return legend(MODE, SUMMARY_COLUMNS)


def summary_table(report: Report, title: str = "", show_cached: bool = True) -> Table:
    """One row per model: the baseline first (accuracy only), then the floor and each quant;
    `show_cached` marks a baseline read from the cache (worth saying on a terminal, not in a
    document)."""
    lead = []
    if report.baseline:
        b = report.baseline
        role = "baseline, cached" if b.from_cache and show_cached else "baseline"
        shown = [c.metric for c in tables.with_appended(MODE, SUMMARY_COLUMNS)]
        lead.append([f"{b.label} ({role})", pct(b.accuracy), *[""] * (len(shown) - 2)])
        lead[0][shown.index("seconds")] = metric_column("seconds").cell(b)
    quants = [*([report.floor] if report.floor else []), *report.quants]
    return tables.summary_table(title, MODE, SUMMARY_COLUMNS, quants, lead)


def verdict_rows(report: Report) -> list[list[str]]:
    """Each quant's verdict against the noise floor, with its flips and KL mean beside the
    floor's (a ratio to a floor of 1e-6 says nothing); empty without a floor."""
    floor = report.floor
    if floor is None:
        return []
    return [
        [
            q.label,
            q.verdict or DASH,
            f"{_n_flips(q)} vs {_n_flips(floor)}",
            f"{sig(q.kl_mean)} vs {sig(floor.kl_mean)}",
            DASH if unknown(q.floor_flips_p) else p_text(q.floor_flips_p, q.floor_flips_log10_p),
            DASH if unknown(q.floor_kl_p) else p_text(q.floor_kl_p, q.floor_kl_log10_p),
            q.verdict_reason,
        ]
        for q in report.quants
    ]


def _n_flips(q: QuantSummary) -> int:
    return q.n_flips_lost + q.n_flips_gained


def _interval(group: dict[str, Any]) -> str:
    low, high = group["flip_rate_ci"]
    return f"{pct(group['flip_rate'])} [{100 * low:.0f}–{100 * high:.0f}]"


def subject_rows(quant: QuantSummary, limit: int | None = None) -> list[list[str]]:
    """Per subject, the most damaged first (at most `limit`)."""
    return [
        [
            str(g["name"]),
            str(g["n"]),
            str(g["flips"]),
            _interval(g),
            pct(g["answer_changes"]),
            sig(g["kl_mean"]),
            pct(g["acceptance_mean"]),
        ]
        for g in quant.by_subject[:limit]
    ]


def confidence_rows(quant: QuantSummary) -> list[list[str]]:
    """Per bucket of the baseline's top option probability (empty buckets left out)."""
    return [
        [
            f"{g['lo']:.2f}–{g['hi']:.2f}",
            str(g["n"]),
            str(g["flips"]),
            _interval(g),
            pct(g["answer_changes"]),
            sig(g["kl_mean"]),
        ]
        for g in quant.confidence_buckets
        if g["n"]
    ]


def bucket_rows(quant: QuantSummary) -> list[list[str]]:
    """Flip rate per baseline top-margin bucket."""
    return [
        [
            f"{b['lo']:.2f}–{b['hi']:.2f}",
            str(b["n"]),
            str(b["flips"]) if b["n"] else DASH,
            pct(float(b["flip_rate"])) if b["n"] else DASH,  # no question: no rate
        ]
        for b in quant.margin_buckets
    ]


def flip_rows(quant: QuantSummary, limit: int) -> list[list[str]]:
    """The flipped questions with the largest KL first, at most `limit`."""
    flipped = sorted((r for r in quant.rows if r.flip), key=lambda r: -r.kl)[:limit]
    return [
        [
            r.id,
            r.subject,
            LETTERS[r.gold],
            f"{LETTERS[r.base_choice]}→{LETTERS[r.quant_choice]}",
            "correct→incorrect" if r.flip == FLIP_LOST else "incorrect→correct",
            sig(r.kl),
            num(r.top_margin, 3),
        ]
        for r in flipped
    ]


def quant_tables(q: QuantSummary, subjects: int | None, flips: int) -> list[tuple[str, Table]]:
    """A quant's section as (Markdown lead-in, table): margin buckets, confidence buckets, the
    `subjects` most damaged subjects (None: all) and the `flips` largest-KL flips (if any)."""
    shown = len(q.by_subject) if subjects is None else min(subjects, len(q.by_subject))
    sections = [
        (
            "Flips by the baseline's top margin:",
            Table(f"{q.label}: flips by top margin", BUCKET_HEADER, bucket_rows(q)),
        ),
        (
            "Flips by the baseline's confidence (its top option probability):",
            Table(
                f"{q.label}: flips by the baseline's confidence (top option probability)",
                CONFIDENCE_HEADER,
                confidence_rows(q),
            ),
        ),
        (
            "Subjects, the most damaged first (flip rate, then KL):",
            Table(
                f"{q.label}: the {shown} most damaged subjects",
                SUBJECT_HEADER,
                subject_rows(q, subjects),
            ),
        ),
    ]
    flipped = flip_rows(q, flips)
    if flipped:
        title = f"{q.label}: flips, largest KL first"
        sections.append(("Flips, largest KL first:", Table(title, FLIP_HEADER, flipped)))
    return sections


def _notes(report: Report) -> list[str]:
    """What the summary table needs said under it: accuracy within noise, `(≈ source)`."""
    noise = notes.accuracy_noise_note(report.quants, report.floor is not None)
    return [n for n in (noise, notes.source_note(q.label for q in report.quants)) if n]


def render_report(report: Report, console: Console, flip_rows: int = 10) -> None:
    """Print the summary table, then per quant its margin buckets and largest-KL flips."""
    title = f"ggflip: set {report.set}, task {report.task}, {report.n_questions} questions"
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    console.print(to_rich(summary_table(report, title)))
    for note in _notes(report):
        console.print(note, markup=False, highlight=False)
    console.print(legend_line(legend_terms()), style="dim", markup=False, highlight=False)
    for line in calibration_lines(report.calibration) + model_lines(report.quants):
        console.print(line, markup=False, highlight=False)
    if report.floor is not None:
        verdicts = Table(
            f"Against the noise floor ({report.floor_method})",
            VERDICT_HEADER,
            verdict_rows(report),
        )
        console.print(to_rich(verdicts, show_edge=False))
    equivalent = equivalence_table(_models(report))
    if equivalent is not None:
        console.print(to_rich(equivalent, show_edge=False))
    render_frontier(report.to_dict()["frontier"], console)
    for q in report.quants:
        for _, table in quant_tables(q, flip_rows, flip_rows):
            console.print(to_rich(table, show_edge=False))


def render_markdown(
    report: Report, flip_rows: int = 10, frontier: dict[str, Any] | None = None
) -> str:
    """The report as a Markdown document (a summary, not the per-question data: that is the
    JSON); `frontier`: the frontier object to show (default: the report's, by mean KL)."""
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
    if report.skipped_rows and "rows valid" not in report.selection:  # older reports: the count
        lines.append(f"{len(report.skipped_rows)} malformed rows skipped.")
    lines += [""]
    lines += to_markdown(summary_table(report, show_cached=False))
    for note in _notes(report):
        lines += ["", note]
    lines += ["", f"_{legend_line(legend_terms())}._"]
    settings = calibration_lines(report.calibration) + model_lines(report.quants)
    lines += ["", *(f"{line}  " for line in settings)] if settings else []
    if report.floor is not None:
        lines += ["", f"Noise floor: {report.floor_method}.", ""]
        lines += to_markdown(Table("", VERDICT_HEADER, verdict_rows(report)))
    equivalent = equivalence_table(_models(report))
    if equivalent is not None:
        lines += ["", f"{equivalent.title}:", ""] + to_markdown(equivalent)
    lines += frontier_markdown(frontier or report.to_dict()["frontier"])
    for q in report.quants:
        flips = q.n_flips_lost + q.n_flips_gained
        flipped = f"{flips} flip" + ("" if flips == 1 else "s")
        lines += ["", f"## {q.label}", "", f"`{q.path}`: {q.n} questions, {flipped}."]
        for lead_in, table in quant_tables(q, None, flip_rows):
            lines += ["", lead_in, ""] + to_markdown(table)
    return "\n".join(lines) + "\n"
