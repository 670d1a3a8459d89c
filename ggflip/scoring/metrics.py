"""The metric registry: every summary metric of every mode, registered once.

An entry names the metric (its JSON key), its column label and short TUI label, its unit, its
direction (higher or lower is better, or neither for a test statistic), its cell format
(`ggflip.scoring.formats`), how per-row values are aggregated, the modes it applies to, its
one-line legend and, per mode, the numpy kernel computing it from that mode's per-row arrays
(none where the mode's own summary computes it, e.g. llama-perplexity's statistics). The JSON
summaries, the terminal, Markdown and HTML tables, the TUI tables and the `?` help read it.

Adding a metric to every mode is its kernel and one `register_metric(..., kernel=fn,
column=True)`: each mode's summary stores it in its JSON (beside the typed fields) and every
table of its modes shows it after the columns the table places itself. A kernel given for all
modes reads only what all their arrays share: `kl`, the per-row (per-question, per-token) KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.registry import (
    MODES,
    REGISTRY,
    Kernel,
    Metric,
    appended_columns,
    compute,
    extra_values,
    metric,
    metrics_of,
    register_metric,
    unregister_metric,
    with_extra,
)
from ggflip.scoring.stats import mcnemar_exact

__all__ = [
    "MODES",
    "REGISTRY",
    "Metric",
    "PairedArrays",
    "appended_columns",
    "compute",
    "extra_values",
    "metric",
    "metrics_of",
    "register_metric",
    "unregister_metric",
    "with_extra",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PairedArrays:
    """Per-question arrays of one baseline/quant comparison, the input of every summary metric."""

    gold: NDArray[np.int64]
    base_choice: NDArray[np.int64]
    quant_choice: NDArray[np.int64]
    kl: FloatArray
    kl_lower_bound: FloatArray
    kl_options: FloatArray
    same_top: NDArray[np.bool_]
    top_margin: FloatArray
    acceptance: FloatArray | None = None

    @property
    def base_correct(self) -> NDArray[np.bool_]:
        return self.base_choice == self.gold

    @property
    def quant_correct(self) -> NDArray[np.bool_]:
        return self.quant_choice == self.gold

    @property
    def lost(self) -> NDArray[np.bool_]:
        """Correct under the baseline, incorrect under the quant."""
        return self.base_correct & ~self.quant_correct

    @property
    def gained(self) -> NDArray[np.bool_]:
        """Incorrect under the baseline, correct under the quant."""
        return ~self.base_correct & self.quant_correct


def _mean(x: NDArray[np.bool_] | NDArray[np.floating]) -> float:
    """The mean of every value: a non-finite KL is kept, not dropped (`ggflip.scoring.groups`)."""
    return float(np.mean(x)) if np.size(x) else math.nan


def accuracy(a: PairedArrays) -> float:
    return _mean(a.quant_correct)


def baseline_accuracy(a: PairedArrays) -> float:
    return _mean(a.base_correct)


def delta_accuracy(a: PairedArrays) -> float:
    return accuracy(a) - baseline_accuracy(a)


def flips(a: PairedArrays) -> float:
    return _mean(a.lost | a.gained)


def flips_lost(a: PairedArrays) -> float:
    return _mean(a.lost)


def flips_gained(a: PairedArrays) -> float:
    return _mean(a.gained)


def answer_changes(a: PairedArrays) -> float:
    return _mean(a.base_choice != a.quant_choice)


def mcnemar_p(a: PairedArrays) -> float:
    return mcnemar_exact(int(a.lost.sum()), int(a.gained.sum()))


def kl_mean(a: PairedArrays) -> float:
    return _mean(a.kl)


def kl_mean_lower_bound(a: PairedArrays) -> float:
    return _mean(a.kl_lower_bound)


def _quantile(x: FloatArray, q: float) -> float:
    return float(np.quantile(x, q)) if x.size else math.nan


def kl_median(a: PairedArrays) -> float:
    return _quantile(a.kl, 0.5)


def kl_p90(a: PairedArrays) -> float:
    return _quantile(a.kl, 0.9)


def kl_p99(a: PairedArrays) -> float:
    return _quantile(a.kl, 0.99)


def kl_max(a: PairedArrays) -> float:
    return float(np.max(a.kl)) if a.kl.size else math.nan


def kl_options_mean(a: PairedArrays) -> float:
    return _mean(a.kl_options)


def same_top(a: PairedArrays) -> float:
    return _mean(a.same_top)


def _acceptance(a: PairedArrays) -> FloatArray:
    values = np.full(a.kl.size, math.nan) if a.acceptance is None else a.acceptance
    return values[np.isfinite(values)]


def acceptance_mean(a: PairedArrays) -> float:
    return _mean(_acceptance(a))


def acceptance_p10(a: PairedArrays) -> float:
    return _quantile(_acceptance(a), 0.1)


def n_flips_lost(a: PairedArrays) -> float:
    return int(a.lost.sum())


def n_flips_gained(a: PairedArrays) -> float:
    return int(a.gained.sum())


CHOICE, CORPUS, GENERATE = ("choice",), ("corpus",), ("generate",)
ANSWERS = ("choice", "generate")  # the modes with gold answers
KL_MODES = ("choice", "corpus")  # the modes whose per-row record is one next-token distribution
ALL = MODES


def _add(
    name: str,
    label: str,
    short: str,
    unit: str,
    higher_is_better: bool | None,
    format: str,
    aggregation: str,
    modes: tuple[str, ...],
    legend: str,
    kernel: Kernel | None = None,
) -> None:
    """Register a built-in metric; its kernel (if any) is multiple choice's."""
    register_metric(
        name,
        label=label,
        short=short,
        unit=unit,
        higher_is_better=higher_is_better,
        format=format,
        aggregation=aggregation,
        modes=modes,
        legend=legend,
        kernel={"choice": kernel} if kernel else None,
    )



_KL = "KL(baseline ‖ quant) of the full next-token distributions, in nats"
_PER = "per question at the answer (multiple choice), per token (corpus, generation)"
_add("accuracy", "accuracy", "acc", "fraction", True, "pct", "mean", ANSWERS,
     "share of questions the quant answers correctly (a live row: over those scored so far)",
     accuracy)
_add("baseline_accuracy", "baseline accuracy", "base acc", "fraction", True, "pct", "mean",
     ANSWERS, "share of questions the baseline answers correctly", baseline_accuracy)
_add("delta_accuracy", "Δacc (pt)", "Δacc", "percentage points", True, "points",
     "difference of means", ANSWERS,
     "quant accuracy minus baseline accuracy, in percentage points", delta_accuracy)
_add("flips", "flips", "flips", "fraction", False, "pct", "mean", CHOICE,
     "answers that went correct→incorrect (c→i) or incorrect→correct (i→c), % of questions",
     flips)
_add("flips_lost", "c→i rate", "c→i %", "fraction", False, "pct", "mean", ANSWERS,
     "share of questions that went correct→incorrect", flips_lost)
_add("flips_gained", "i→c rate", "i→c %", "fraction", False, "pct", "mean", ANSWERS,
     "share of questions that went incorrect→correct", flips_gained)
_add("n_flips_lost", "c→i", "c→i", "questions", False, "count", "count", ANSWERS,
     "questions that went correct→incorrect", n_flips_lost)
_add("n_flips_gained", "i→c", "i→c", "questions", False, "count", "count", ANSWERS,
     "questions that went incorrect→correct", n_flips_gained)
_add("answer_changes", "changes", "changes", "fraction", False, "pct", "mean", ANSWERS,
     "answers that differ from the baseline's, wrong→other wrong included", answer_changes)
_add("mcnemar_p", "McNemar p", "McNemar p", "p-value", None, "p", "exact test", ANSWERS,
     "exact test of c→i against i→c: small means the accuracy really changed", mcnemar_p)
_add("kl_mean", "KL mean", "KL mean", "nats", False, "kl", "mean", ALL,
     f"mean {_KL}, {_PER}", kl_mean)
_add("kl_mean_lower_bound", "KL mean lower bound", "KL low", "nats", False, "kl", "mean",
     KL_MODES, "mean top-K + merged-tail KL, never above the exact KL", kl_mean_lower_bound)
_add("kl_median", "KL median", "KL med", "nats", False, "kl", "median", KL_MODES,
     f"median {_KL}", kl_median)
_add("kl_p90", "KL p90", "KL p90", "nats", False, "kl", "90th percentile", CHOICE,
     f"90th percentile of {_KL}", kl_p90)
_add("kl_p99", "KL p99", "KL p99", "nats", False, "kl", "99th percentile", ALL,
     f"99th percentile of {_KL}", kl_p99)
_add("kl_max", "KL max", "KL max", "nats", False, "kl", "max", ALL, f"largest {_KL}", kl_max)
_add("kl_options_mean", "KL options", "KL opt", "nats", False, "kl", "mean", CHOICE,
     "mean KL of the two distributions renormalized over the options", kl_options_mean)
_add("kl_question_mean", "KL turn mean", "KL turn", "nats", False, "kl", "mean of turn means",
     GENERATE, f"mean over turns of each turn's mean {_KL}")
_add("same_top", "same top", "same top", "fraction", True, "pct", "mean", KL_MODES,
     "questions (tokens) where both models' most probable next token is the same", same_top)
_add("top1_agreement", "top-1", "top-1", "fraction", True, "pct", "mean", GENERATE,
     "tokens of the baseline's generation that are also the quant's most probable")
_add("acceptance_mean", "accept", "accept", "fraction", True, "pct", "mean", KL_MODES,
     "expected acceptance Σ min(p, q): how often a token drawn from the quant is accepted when "
     "the baseline verifies it (the tail's share estimated from the baseline's tail draws)",
     acceptance_mean)
_add("acceptance_p10", "accept p10", "acc p10", "fraction", True, "pct", "10th percentile",
     KL_MODES, "10th percentile of the expected acceptance", acceptance_p10)
_add("ppl", "PPL", "PPL", "perplexity", False, "ppl", "exp of the mean NLL", CORPUS,
     "the quant's perplexity of the corpus")
_add("ppl_ratio", "PPL ratio", "PPL ratio", "ratio", False, "ratio", "exp of the mean NLL gap",
     CORPUS, "the quant's perplexity over the baseline's")
_add("dp_rms", "RMS Δp", "RMS Δp", "fraction", False, "pct", "root mean square", CORPUS,
     "RMS of Δp, the quant's probability of the actual next token minus the baseline's")
_add("delta_p_rms", "RMS Δp", "RMS Δp", "fraction", False, "pct", "root mean square", GENERATE,
     "RMS of Δp, the quant's probability of the baseline's next token minus the baseline's")
_add("same_text", "same text", "same text", "fraction", True, "pct", "mean", GENERATE,
     "turns the quant generates token for token as the baseline")
_add("first_divergence", "first divergence median (p10–p90)", "1st div", "tokens", True,
     "tokens", "median over the turns that differ", GENERATE,
     "the first generated token where the two texts differ")
_add("seconds", "seconds", "seconds", "seconds", False, "seconds", "sum", ALL,
     "the quant's wall time")
