"""Where the damage is: flips, answer changes, KL and acceptance per group of questions.

A group is any label a question carries (MMLU's subject, a corpus category) or a bucket of a
value (the baseline's confidence: its top option probability). Every function takes flat
per-question arrays, so every mode can call it on its own rows; the counts of the groups add
up to the totals.

One rule for a non-finite KL, here as in the totals (`ggflip.scoring.metrics`): it is kept, never
dropped. A mean over questions includes every question, so an infinite KL (the quant gives no
probability to a token the baseline does) makes its group's mean infinite and a nan KL (a broken
computation) makes it nan, as it does the total's; damage is never hidden by leaving it out.
Acceptance is different: nan there means "not measured" (no cached distribution), and its mean
is over the questions that have a finite one (as in the totals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.stats import wilson_interval

# Baseline confidence (top option probability) bucket edges; 4 options put the floor at 0.25.
CONFIDENCE_EDGES: tuple[float, ...] = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

Group = dict[str, Any]


def _mean(values: NDArray[np.float64]) -> float:
    """The mean of every value, non-finite ones included; nan when there are none."""
    return float(values.mean()) if values.size else math.nan


def _measured_mean(values: NDArray[np.float64]) -> float:
    """The mean of the values that were measured (finite); nan when there are none."""
    measured = values[np.isfinite(values)]
    return float(measured.mean()) if measured.size else math.nan


def _group(
    flipped: NDArray[np.bool_],
    changed: NDArray[np.bool_],
    kl: NDArray[np.float64],
    acceptance: NDArray[np.float64],
) -> Group:
    n, n_flips = int(flipped.size), int(flipped.sum())
    return {
        "n": n,
        "flips": n_flips,
        "flip_rate": n_flips / n if n else 0.0,
        "flip_rate_ci": wilson_interval(n_flips, n),
        "changes": int(changed.sum()),
        "answer_changes": float(changed.mean()) if n else 0.0,
        "kl_mean": _mean(kl),
        "acceptance_mean": _measured_mean(acceptance),
    }


def _arrays(
    flipped: Sequence[bool] | NDArray[np.bool_],
    changed: Sequence[bool] | NDArray[np.bool_],
    kl: Sequence[float] | NDArray[np.floating],
    acceptance: Sequence[float] | NDArray[np.floating] | None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
    f = np.asarray(flipped, dtype=bool)
    c = np.asarray(changed, dtype=bool)
    k = np.asarray(kl, dtype=np.float64)
    a = np.full(f.size, math.nan) if acceptance is None else np.asarray(acceptance, np.float64)
    if not f.size == c.size == k.size == a.size:
        raise ValueError("every per-question array needs the same length")
    return f, c, k, a


def by_group(
    names: Sequence[str],
    flipped: Sequence[bool] | NDArray[np.bool_],
    changed: Sequence[bool] | NDArray[np.bool_],
    kl: Sequence[float] | NDArray[np.floating],
    acceptance: Sequence[float] | NDArray[np.floating] | None = None,
) -> list[Group]:
    """One entry per distinct name, the most damaged first (flip rate, then mean KL, then name).

    Each entry: `name`, `n`, `flips` (count), `flip_rate` with its 95% Wilson `flip_rate_ci`,
    `changes` (count) and `answer_changes` (rate), `kl_mean`, `acceptance_mean` (nan without
    acceptance values).
    """
    f, c, k, a = _arrays(flipped, changed, kl, acceptance)
    labels = np.asarray(list(names), dtype=object)
    if labels.size != f.size:
        raise ValueError("one group name per question is needed")
    groups = []
    for name in sorted(set(labels.tolist())):
        inside = labels == name
        groups.append({"name": name, **_group(f[inside], c[inside], k[inside], a[inside])})

    def damage(group: Group) -> tuple[float, float, str]:
        kl_mean = float(group["kl_mean"])
        return (
            -float(group["flip_rate"]),
            -(0.0 if math.isnan(kl_mean) else kl_mean),  # an infinite KL is the most damage
            str(group["name"]),
        )

    return sorted(groups, key=damage)


def by_bucket(
    values: Sequence[float] | NDArray[np.floating],
    flipped: Sequence[bool] | NDArray[np.bool_],
    changed: Sequence[bool] | NDArray[np.bool_],
    kl: Sequence[float] | NDArray[np.floating],
    acceptance: Sequence[float] | NDArray[np.floating] | None = None,
    edges: tuple[float, ...] = CONFIDENCE_EDGES,
) -> list[Group]:
    """One entry per bucket [lo, hi) of `values` (the last includes hi), in bucket order.

    Each entry: `lo`, `hi` and the fields of `by_group` (without `name`).
    """
    f, c, k, a = _arrays(flipped, changed, kl, acceptance)
    v = np.asarray(values, dtype=np.float64)
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (v >= lo) & ((v <= hi) if last else (v < hi))
        out.append({"lo": lo, "hi": hi, **_group(f[inside], c[inside], k[inside], a[inside])})
    return out
