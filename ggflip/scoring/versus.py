"""Quant against quant: is A better than B on the same questions, turns or text?

`compare_quants` pairs two quants of one report unit by unit (a question in multiple choice, a
turn in generation, a chunk in corpus mode) and tests both kinds of difference:

- correctness (where there are gold answers): the exact McNemar test of "A right, B wrong" against
  "B right, A wrong" (`ggflip.scoring.stats.mcnemar_exact`) and Tango's 95 % score interval of
  the accuracy difference A - B (`ggflip.scoring.equivalence.tango_z`);
- KL against the baseline: the mean per-unit difference KL(A) - KL(B) with its 95 % normal
  interval, and the exact two-sided sign test of "A's KL is lower" against "B's is"
  (`binomial_half_tail`, any n), which needs no assumption on the heavy-tailed per-unit KLs.

It reads the JSON document of any mode (`ggflip run --json`, `ggflip kld --json`), so `ggflip
pick --compare A B` and any script can call it on a saved report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ggflip.errors import UsageError, did_you_mean
from ggflip.scoring.equivalence import tango_z
from ggflip.scoring.stats import binomial_half_tail, mcnemar_exact, mean_interval

ALPHA = 0.05
Z95 = 1.959963984540054


def _mode(report: Mapping[str, Any]) -> str:
    if report.get("mode") == "kld":
        return "corpus"
    return "generate" if str(report.get("schema", "")).startswith("ggflip.generate") else "choice"


def _quant(report: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    models = [*report.get("quants", []), *([report["floor"]] if report.get("floor") else [])]
    for quant in models:
        if quant.get("label") == label:
            return quant  # type: ignore[no-any-return]
    # a label without its note: "Q4_K_M" names "Q4_K_M (≈ source)" when it is the only such one
    noted = [q for q in models if str(q.get("label", "")).split(" (")[0] == label]
    if len(noted) == 1:
        return noted[0]  # type: ignore[no-any-return]
    labels = [str(q.get("label")) for q in models]
    hint = did_you_mean(label, labels)
    raise UsageError(f"no quant {label!r} in the report{hint} (quants: {', '.join(labels)})")


def _units(report: Mapping[str, Any], quant: Mapping[str, Any]) -> dict[Any, tuple[Any, float]]:
    """Each unit's key to (correct or None, KL) in `quant`."""
    mode = _mode(report)
    if mode == "corpus":
        return {i: (None, _float(kl)) for i, kl in enumerate(quant.get("chunk_kl") or [])}
    if mode == "generate":
        rule = report.get("answer_rule")
        units = {}
        for row in quant.get("rows", []):
            answers = (row.get("answers") or {}).get(rule) if rule else None
            correct = None if answers is None or row.get("gold") is None else (
                answers[1] == row["gold"]
            )
            units[(row["index"], row["turn"])] = (correct, _float(row.get("kl_mean")))
        return units
    return {
        row["index"]: (row["quant_choice"] == row["gold"], _float(row.get("kl")))
        for row in quant.get("rows", [])
    }


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _tango_interval(n: int, b_only: int, a_only: int) -> tuple[float, float]:
    """Tango's 95 % interval of accuracy(A) - accuracy(B) (A-only plays "gained")."""
    def solve(target: float) -> float:
        low, high = -1.0, 1.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if tango_z(n, b_only, a_only, mid) > target else (low, mid)
        return (low + high) / 2

    return (solve(Z95), solve(-Z95)) if n else (-1.0, 1.0)


def _accuracy(a: str, b: str, pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    n = len(pairs)
    a_only = sum(x and not y for x, y in pairs)
    b_only = sum(y and not x for x, y in pairs)
    p = mcnemar_exact(b_only, a_only)
    higher = (a if a_only > b_only else b) if p < ALPHA else None
    return {
        "n": n,
        "a": sum(x for x, _ in pairs) / n if n else math.nan,
        "b": sum(y for _, y in pairs) / n if n else math.nan,
        "difference": (a_only - b_only) / n if n else math.nan,
        "ci": list(_tango_interval(n, b_only, a_only)),
        "a_only": a_only,
        "b_only": b_only,
        "mcnemar_p": p,
        "higher": higher,
    }


def _kl(a: str, b: str, kl_a: np.ndarray, kl_b: np.ndarray) -> dict[str, Any]:
    finite = np.isfinite(kl_a) & np.isfinite(kl_b)
    diff = kl_a[finite] - kl_b[finite]
    a_lower, b_lower = int((diff < 0).sum()), int((diff > 0).sum())
    untied = a_lower + b_lower
    sign_p = min(1.0, 2 * binomial_half_tail(untied, max(a_lower, b_lower))) if untied else 1.0
    low, high = mean_interval(diff)
    lower = None
    if sign_p < ALPHA and (high < 0 or low > 0):
        lower = a if high < 0 else b
    return {
        "n": int(diff.size),
        "a_mean": float(kl_a[finite].mean()) if diff.size else math.nan,
        "b_mean": float(kl_b[finite].mean()) if diff.size else math.nan,
        "difference": float(diff.mean()) if diff.size else math.nan,
        "ci": [low, high],
        "a_lower": a_lower,
        "b_lower": b_lower,
        "sign_p": sign_p,
        "lower": lower,
    }


def compare_quants(report: Mapping[str, Any], a: str, b: str) -> dict[str, Any]:
    """Quant `a` against quant `b` of one report, paired on the units both scored.

    Args:
        report: the JSON document of a run of any mode (`run --json`, `kld --json`).
        a, b: quant labels (the floor's label works too).

    Returns:
        {"a", "b", "mode", "unit", "n", "accuracy": null | {"n", "a", "b", "difference",
         "ci", "a_only", "b_only", "mcnemar_p", "higher"}, "kl": {"n", "a_mean", "b_mean",
         "difference", "ci", "a_lower", "b_lower", "sign_p", "lower"}}: differences are A - B,
        intervals 95 %; `higher` / `lower` name the quant that is significantly more accurate /
        closer to the baseline (p < 0.05; for KL the sign test and the interval agree), else
        null. NaN stands for "not measured" (the JSON writers make it null).

    Raises:
        UsageError: an unknown label (with the closest), `a` equal to `b`, or no unit both
            quants scored (a corpus report from before per-chunk KLs were written).
    """
    if a == b:
        raise UsageError(f"compare two different quants, not {a!r} with itself")
    units_a, units_b = _units(report, _quant(report, a)), _units(report, _quant(report, b))
    keys = [key for key in units_a if key in units_b]
    if not keys:
        raise UsageError(f"{a} and {b} share no scored unit in this report")
    pairs = [(units_a[k][0], units_b[k][0]) for k in keys]
    graded = [(x, y) for x, y in pairs if x is not None and y is not None]
    kl_a = np.array([units_a[k][1] for k in keys], dtype=np.float64)
    kl_b = np.array([units_b[k][1] for k in keys], dtype=np.float64)
    mode = _mode(report)
    return {
        "a": a,
        "b": b,
        "mode": mode,
        "unit": {"choice": "questions", "generate": "turns", "corpus": "chunks"}[mode],
        "n": len(keys),
        "accuracy": _accuracy(a, b, graded) if graded else None,  # type: ignore[arg-type]
        "kl": _kl(a, b, kl_a, kl_b),
    }
