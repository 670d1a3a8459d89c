"""A report as a Markdown summary: the summary table, flips per top-margin bucket, the largest-KL flips.

Plain text with no terminal dependency, so the TUI's export and any other front end write the
same document. Rates are shown in percent, KL in nats.
"""
from __future__ import annotations

from ggflip.questions import LETTERS
from ggflip.report import QuantSummary, Report
from ggflip.scoring import FLIP_LOST


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _summary_rows(report: Report) -> list[list[str]]:
    rows = []
    if report.baseline:
        b = report.baseline
        note = " (cached)" if b.from_cache else ""
        rows.append([f"{b.label} (baseline){note}", _pct(b.accuracy)] + [""] * 9)
    for q in report.quants:
        rows.append(
            [
                q.label,
                _pct(q.accuracy),
                f"{100 * q.delta_accuracy:+.1f}",
                _pct(q.flips),
                str(q.n_flips_lost),
                str(q.n_flips_gained),
                _pct(q.answer_changes),
                f"{q.mcnemar_p:.3f}",
                f"{q.kl_mean:.4f}",
                f"{q.kl_p99:.4f}",
                _pct(q.same_top),
            ]
        )
    return rows


def _quant_section(q: QuantSummary, flip_rows: int) -> list[str]:
    lines = ["", f"## {q.label}", "", f"`{q.path}`: {q.n} questions, {q.n_flips_lost + q.n_flips_gained} flips.", ""]
    buckets = [
        [f"{b['lo']:.2f}–{b['hi']:.2f}", str(b["n"]), str(b["flips"]), _pct(float(b["flip_rate"]))] for b in q.margin_buckets
    ]
    lines += ["Flips by the baseline's top margin:", ""] + _table(["margin", "n", "flips", "flip rate"], buckets)
    flipped = sorted((r for r in q.rows if r.flip), key=lambda r: -r.kl)[:flip_rows]
    if flipped:
        rows = [
            [
                r.id,
                r.subject,
                LETTERS[r.gold],
                f"{LETTERS[r.base_choice]}→{LETTERS[r.quant_choice]}",
                "correct→incorrect" if r.flip == FLIP_LOST else "incorrect→correct",
                f"{r.kl:.4f}",
                f"{r.top_margin:.3f}",
            ]
            for r in flipped
        ]
        lines += ["", "Flips, largest KL first:", ""]
        lines += _table(["id", "subject", "gold", "base→quant", "direction", "KL", "margin"], rows)
    return lines


def render_markdown(report: Report, flip_rows: int = 10) -> str:
    """The report as a Markdown document (a summary, not the per-question data: that is the JSON)."""
    title = f"# ggflip: set {report.set}, task {report.task}"
    lines = [title, ""]
    lines.append(
        f"{report.n_questions} questions from `{report.source}`, prompt `{report.prompt_version}`"
        + ("." if report.complete else "; **incomplete: the run stopped early**, only finished models are listed.")
    )
    if report.skipped_rows:
        lines.append(f"{len(report.skipped_rows)} malformed rows skipped.")
    lines += [""]
    header = ["model", "accuracy", "Δacc (pt)", "flips", "c→i", "i→c", "changes", "McNemar p", "KL mean", "KL p99", "same top"]
    lines += _table(header, _summary_rows(report))
    for q in report.quants:
        lines += _quant_section(q, flip_rows)
    return "\n".join(lines) + "\n"
