"""The text cells of a report's tables, shared by the terminal tables (render.py) and Markdown.

Rates are shown in percent, KL in nats; answers as letters.
"""

from __future__ import annotations

import math
from typing import Any

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
    "accept",
    "accept p10",
]
VERDICT_HEADER = ["model", "verdict", "KL / floor", "flips p", "KL p", "why"]
SUBJECT_HEADER = ["subject", "n", "flips", "flip rate [95% CI]", "changes", "KL mean", "accept"]
CONFIDENCE_HEADER = ["confidence", "n", "flips", "flip rate [95% CI]", "changes", "KL mean"]
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
    (
        "accept",
        "expected acceptance Σ min(p, q): how often a token drawn from the quant is accepted when "
        "the baseline verifies it (p10: its 10th percentile)",
    ),
)


def legend_line() -> str:
    """The legend as one line of `term: meaning` pairs."""
    return " · ".join(f"{term}: {meaning}" for term, meaning in LEGEND)


FLIP_HEADER = ["id", "subject", "gold", "base→quant", "direction", "KL", "margin"]


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal; "–" when unknown."""
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def summary_rows(report: Report, show_cached: bool = True) -> list[list[str]]:
    """One row per model: the baseline first (accuracy only), then each quant's summary metrics;
    `show_cached` marks a baseline read from the cache (worth saying on a terminal, not in a
    document)."""
    rows = []
    if report.baseline:
        b = report.baseline
        role = "baseline, cached" if b.from_cache and show_cached else "baseline"
        rows.append([f"{b.label} ({role})", pct(b.accuracy)] + [""] * (len(SUMMARY_HEADER) - 2))
    for q in [report.floor] if report.floor else []:
        rows.append(_quant_cells(q))
    rows += [_quant_cells(q) for q in report.quants]
    return rows


def _quant_cells(q: QuantSummary) -> list[str]:
    return [
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
        pct(q.acceptance_mean),
        pct(q.acceptance_p10),
    ]


def verdict_rows(report: Report) -> list[list[str]]:
    """Each quant's verdict against the noise floor; empty without a floor."""
    if report.floor is None:
        return []
    return [
        [
            q.label,
            q.verdict or "–",
            "–" if math.isnan(q.kl_mean_over_floor) else f"{q.kl_mean_over_floor:.1f}×",
            "–" if math.isnan(q.floor_flips_p) else f"{q.floor_flips_p:.3g}",
            "–" if math.isnan(q.floor_kl_p) else f"{q.floor_kl_p:.3g}",
            q.verdict_reason,
        ]
        for q in report.quants
    ]


def _interval(group: dict[str, Any]) -> str:
    low, high = group["flip_rate_ci"]
    return f"{pct(group['flip_rate'])} [{100 * low:.0f}–{100 * high:.0f}]"


def _kl(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def subject_rows(quant: QuantSummary, limit: int | None = None) -> list[list[str]]:
    """Per subject, the most damaged first (at most `limit`)."""
    return [
        [
            str(g["name"]),
            str(g["n"]),
            str(g["flips"]),
            _interval(g),
            pct(g["answer_changes"]),
            _kl(g["kl_mean"]),
            "–"
            if g["acceptance_mean"] is None or math.isnan(g["acceptance_mean"])
            else pct(g["acceptance_mean"]),
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
            _kl(g["kl_mean"]),
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
