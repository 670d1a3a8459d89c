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
FLIP_HEADER = ["id", "subject", "gold", "base→quant", "direction", "KL", "margin"]


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


def summary_rows(report: Report) -> list[list[str]]:
    """One row per model: the baseline first (accuracy only), then each quant's summary metrics."""
    rows = []
    if report.baseline:
        b = report.baseline
        note = " (cached)" if b.from_cache else ""
        rows.append(
            [f"{b.label} (baseline){note}", pct(b.accuracy)] + [""] * (len(SUMMARY_HEADER) - 2)
        )
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
        [f"{b['lo']:.2f}–{b['hi']:.2f}", str(b["n"]), str(b["flips"]), pct(float(b["flip_rate"]))]
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
