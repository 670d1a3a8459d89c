"""The metric registry: each summary metric a small numpy function over paired answers.

A metric is registered by name with its direction (higher or lower is better, or neither for a
test statistic); every summary folds the whole registry. The kernels they build on live in
`kernels`, `topk` and `stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.stats import mcnemar_exact

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


@dataclass(frozen=True)
class Metric:
    """A named summary of PairedArrays; `higher_is_better` says which way is good (None: neither,
    e.g. a p-value, which says how sure a difference is, not whether the quant is good)."""

    name: str
    fn: Callable[[PairedArrays], float]
    higher_is_better: bool | None
    description: str


METRICS: dict[str, Metric] = {}


def register(
    name: str, higher_is_better: bool | None, description: str
) -> Callable[[Callable[[PairedArrays], float]], Callable[[PairedArrays], float]]:
    """Decorator adding a summary metric to the registry under `name`."""

    def add(fn: Callable[[PairedArrays], float]) -> Callable[[PairedArrays], float]:
        METRICS[name] = Metric(name, fn, higher_is_better, description)
        return fn

    return add


def _mean(x: NDArray[np.bool_] | NDArray[np.floating]) -> float:
    return float(np.mean(x)) if np.size(x) else math.nan


@register("accuracy", True, "fraction of questions the quant answers correctly")
def accuracy(a: PairedArrays) -> float:
    return _mean(a.quant_correct)


@register("baseline_accuracy", True, "fraction of questions the baseline answers correctly")
def baseline_accuracy(a: PairedArrays) -> float:
    return _mean(a.base_correct)


@register("delta_accuracy", True, "quant accuracy minus baseline accuracy")
def delta_accuracy(a: PairedArrays) -> float:
    return accuracy(a) - baseline_accuracy(a)


@register("flips", False, "(correct->incorrect + incorrect->correct) / N")
def flips(a: PairedArrays) -> float:
    return _mean(a.lost | a.gained)


@register("flips_lost", False, "correct->incorrect / N")
def flips_lost(a: PairedArrays) -> float:
    return _mean(a.lost)


@register("flips_gained", False, "incorrect->correct / N")
def flips_gained(a: PairedArrays) -> float:
    return _mean(a.gained)


@register(
    "answer_changes",
    False,
    "chosen option differs from the baseline's, wrong->other-wrong included",
)
def answer_changes(a: PairedArrays) -> float:
    return _mean(a.base_choice != a.quant_choice)


@register(
    "mcnemar_p", None, "exact McNemar p-value of lost vs gained (small: accuracy really changed)"
)
def mcnemar_p(a: PairedArrays) -> float:
    return mcnemar_exact(int(a.lost.sum()), int(a.gained.sum()))


@register("kl_mean", False, "mean full-vocabulary KL(base || quant) at the answer position")
def kl_mean(a: PairedArrays) -> float:
    return _mean(a.kl)


@register("kl_mean_lower_bound", False, "mean top-K + merged-tail KL, never above the exact KL")
def kl_mean_lower_bound(a: PairedArrays) -> float:
    return _mean(a.kl_lower_bound)


def _quantile(x: FloatArray, q: float) -> float:
    return float(np.quantile(x, q)) if x.size else math.nan


@register("kl_median", False, "median full-vocabulary KL")
def kl_median(a: PairedArrays) -> float:
    return _quantile(a.kl, 0.5)


@register("kl_p90", False, "90th percentile of full-vocabulary KL")
def kl_p90(a: PairedArrays) -> float:
    return _quantile(a.kl, 0.9)


@register("kl_p99", False, "99th percentile of full-vocabulary KL")
def kl_p99(a: PairedArrays) -> float:
    return _quantile(a.kl, 0.99)


@register("kl_max", False, "largest full-vocabulary KL")
def kl_max(a: PairedArrays) -> float:
    return float(np.max(a.kl)) if a.kl.size else math.nan


@register(
    "kl_options_mean", False, "mean KL of the two distributions renormalized over the options"
)
def kl_options_mean(a: PairedArrays) -> float:
    return _mean(a.kl_options)


@register("same_top", True, "fraction where baseline and quant share the full-vocabulary argmax")
def same_top(a: PairedArrays) -> float:
    return _mean(a.same_top)


def _acceptance(a: PairedArrays) -> FloatArray:
    values = np.full(a.kl.size, math.nan) if a.acceptance is None else a.acceptance
    return values[np.isfinite(values)]


@register(
    "acceptance_mean",
    True,
    "mean expected acceptance Σ min(p, q) of the quant as a speculative draft for the baseline"
    " (the tail's share estimated from the baseline's tail draws)",
)
def acceptance_mean(a: PairedArrays) -> float:
    return _mean(_acceptance(a))


@register("acceptance_p10", True, "10th percentile of the per-question expected acceptance")
def acceptance_p10(a: PairedArrays) -> float:
    return _quantile(_acceptance(a), 0.1)
