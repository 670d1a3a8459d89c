"""Human-readable rendering of a Report with rich: a summary table, margin buckets, top flips."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ggflip.questions import LETTERS
from ggflip.report import Report
from ggflip.scoring import FLIP_LOST


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def render_report(report: Report, console: Console, flip_rows: int = 10) -> None:
    """Print the summary table, then per quant its margin buckets and largest-KL flips."""
    title = f"ggflip: set {report.set}, task {report.task}, {report.n_questions} questions"
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    table = Table(title=title)
    for column in ("model", "accuracy", "Δacc", "flips", "c→i", "i→c", "changes", "McNemar p", "KL mean", "KL p99", "same top"):
        table.add_column(column, justify="left" if column == "model" else "right")
    if report.baseline:
        b = report.baseline
        note = " (cached)" if b.from_cache else ""
        table.add_row(f"{b.label} (baseline){note}", _pct(b.accuracy), "", "", "", "", "", "", "", "", "")
    for q in report.quants:
        table.add_row(
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
        )
    console.print(table)
    for q in report.quants:
        buckets = Table(title=f"{q.label}: flips by top margin", show_edge=False)
        buckets.add_column("margin")
        buckets.add_column("n", justify="right")
        buckets.add_column("flips", justify="right")
        buckets.add_column("rate", justify="right")
        for bucket in q.margin_buckets:
            buckets.add_row(f"{bucket['lo']:.2f}–{bucket['hi']:.2f}", str(bucket["n"]), str(bucket["flips"]), _pct(float(bucket["flip_rate"])))
        console.print(buckets)
        flipped = sorted((r for r in q.rows if r.flip), key=lambda r: -r.kl)[:flip_rows]
        if flipped:
            flips = Table(title=f"{q.label}: flips, largest KL first", show_edge=False)
            for column in ("id", "subject", "gold", "base→quant", "direction", "KL", "margin"):
                flips.add_column(column)
            for r in flipped:
                direction = "correct→incorrect" if r.flip == FLIP_LOST else "incorrect→correct"
                flips.add_row(
                    r.id, r.subject, LETTERS[r.gold], f"{LETTERS[r.base_choice]}→{LETTERS[r.quant_choice]}", direction, f"{r.kl:.4f}", f"{r.top_margin:.3f}"
                )
            console.print(flips)
