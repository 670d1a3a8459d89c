"""The text cells of a report's tables, shared by the terminal tables (render.py) and Markdown.

Rates are shown in percent, KL in nats; answers as letters.
"""

from __future__ import annotations

from ggflip.choice.answers import FLIP_LOST
from ggflip.choice.report import QuantSummary, Report
from ggflip.tasks.questions import LETTERS

SUMMARY_HEADER = [
    "model",
    "accuracy",
    "Δacc (pt)",
    "flips",
    "c→i",
    "i→c",
    "changes",
    "McNemar p",
    "KL mean",
    "KL p99",
    "same top",
]
BUCKET_HEADER = ["margin", "n", "flips", "flip rate"]
# What each column means, in the order of the summary table: one line under the terminal and
# Markdown tables, and the TUI's `?` screen.
LEGEND = (
    ("Δacc", "quant accuracy minus baseline accuracy, in percentage points"),
    (
        "flips",
        "answers that went correct→incorrect (c→i) or incorrect→correct (i→c), % of questions",
    ),
    ("changes", "answers that differ from the baseline's, wrong→other wrong included"),
    ("McNemar p", "exact test of c→i against i→c: small means the accuracy really changed"),
    ("KL", "KL(baseline ‖ quant) of the full next-token distributions at the answer, in nats"),
    ("same top", "questions where both models' most probable next token is the same"),
)


def legend_line() -> str:
    """The legend as one line of `term: meaning` pairs."""
    return " · ".join(f"{term}: {meaning}" for term, meaning in LEGEND)


FLIP_HEADER = ["id", "subject", "gold", "base→quant", "direction", "KL", "margin"]


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


def summary_rows(report: Report, show_cached: bool = True) -> list[list[str]]:
    """One row per model: the baseline first (accuracy only), then each quant's summary metrics;
    `show_cached` marks a baseline read from the cache (worth saying on a terminal, not in a
    document)."""
    rows = []
    if report.baseline:
        b = report.baseline
        role = "baseline, cached" if b.from_cache and show_cached else "baseline"
        rows.append([f"{b.label} ({role})", pct(b.accuracy)] + [""] * (len(SUMMARY_HEADER) - 2))
    for q in report.quants:
        rows.append(
            [
                q.label,
                pct(q.accuracy),
                f"{100 * q.delta_accuracy:+.1f}",
                pct(q.flips),
                str(q.n_flips_lost),
                str(q.n_flips_gained),
                pct(q.answer_changes),
                f"{q.mcnemar_p:.3f}",
                f"{q.kl_mean:.4f}",
                f"{q.kl_p99:.4f}",
                pct(q.same_top),
            ]
        )
    return rows


def bucket_rows(quant: QuantSummary) -> list[list[str]]:
    """Flip rate per baseline top-margin bucket."""
    return [
        [
            f"{b['lo']:.2f}–{b['hi']:.2f}",
            str(b["n"]),
            str(b["flips"]) if b["n"] else "–",
            pct(float(b["flip_rate"])) if b["n"] else "–",  # no question: no rate
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
            f"{r.kl:.4f}",
            f"{r.top_margin:.3f}",
        ]
        for r in flipped
    ]
