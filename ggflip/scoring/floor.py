"""The noise floor's verdict: is a quant's damage more than the baseline's own arithmetic noise?

The floor is the baseline scored a second time under another valid computation (another decode
grouping); its flips and KL against the first pass are what batching alone does. The verdict
pairs the quant with the floor unit by unit (a question in multiple choice; any mode can pass its
own units) and asks two one-sided questions, each an exact sign test:

- flips: with b = units flipped by the quant only and c = by the floor only, P(X >= b),
  X ~ Binomial(b + c, 1/2) (under "no more flips than the floor" each discordant unit is a
  fair coin);
- KL: with b = units where the quant's KL is larger than the floor's and c = where it is
  smaller (equal KLs are ties and drop out), the same P(X >= b) (under "the quant's KL is
  no larger than the floor's" quant and floor are exchangeable on each unit, so each untied
  unit is a fair coin).

The sign test needs no distribution: per-unit KLs are heavy-tailed (a few units carry most of
the mean), and the test's level holds whatever their shape; its null false-positive rate and
its power are measured in `tests/test_verdicts.py`. Both p-values are exact at any n
(`ggflip.scoring.stats.binomial_half_tail`). A quant is `indistinguishable` when both
p-values are >= 0.05, else `different`, and the reason names which test failed.

A non-finite KL compares as floats do: an infinite KL is larger than any finite one (two
infinite KLs tie), and a unit with a nan KL on either side is a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.stats import binomial_half_tail, binomial_half_tail_log10, p_text

INDISTINGUISHABLE = "indistinguishable"
DIFFERENT = "different"
ALPHA = 0.05


def excess_p(n_quant_only: int, n_floor_only: int) -> float:
    """One-sided exact sign-test p-value that the quant's side wins more units than the floor's.

    P(X >= n_quant_only) for X ~ Binomial(n_quant_only + n_floor_only, 1/2); 1 when neither
    side won a unit. Exact at any count.
    """
    if n_quant_only < 0 or n_floor_only < 0:
        raise ValueError("counts must be 0 or more")
    return binomial_half_tail(n_quant_only + n_floor_only, n_quant_only)


excess_flips_p = excess_p  # the flip test: units flipped by the quant only vs by the floor only


def kl_signs(quant_kl: NDArray[np.floating], floor_kl: NDArray[np.floating]) -> tuple[int, int]:
    """How many paired units have the quant's KL above the floor's, and how many below."""
    q = np.asarray(quant_kl, dtype=np.float64)
    f = np.asarray(floor_kl, dtype=np.float64)
    if q.shape != f.shape:
        raise ValueError("the quant's and the floor's KLs must be paired on the same units")
    return int((q > f).sum()), int((q < f).sum())


@dataclass(frozen=True)
class Verdict:
    """A quant against the floor: the verdict, why, and the numbers it rests on."""

    verdict: str
    reason: str
    flips_p: float
    n_quant_only: int
    n_floor_only: int
    kl_p: float
    n_kl_above: int
    n_kl_below: int
    kl_mean_over_floor: float
    # log10 of each p-value, finite where the p-value itself underflows to 0.0 (n >~ 1,075)
    flips_log10_p: float = 0.0
    kl_log10_p: float = 0.0


def verdict(
    quant_flipped: NDArray[np.bool_],
    floor_flipped: NDArray[np.bool_],
    quant_kl: NDArray[np.floating],
    floor_kl: NDArray[np.floating],
) -> Verdict:
    """The verdict of one quant, from paired per-unit flips and KLs over the same units.

    Args:
        quant_flipped, floor_flipped: (n,) whether the quant / the floor flipped each unit
            (against the baseline's answer's correctness), aligned on the same units.
        quant_kl, floor_kl: (n,) the quant's / the floor's KL against the baseline on each unit.

    Raises:
        ValueError: the arrays are not all of one shape.
    """
    q = np.asarray(quant_flipped, dtype=bool)
    f = np.asarray(floor_flipped, dtype=bool)
    if q.shape != f.shape or np.shape(quant_kl) != q.shape:
        raise ValueError("the quant's and the floor's flips must be paired on the same units")
    b, c = int((q & ~f).sum()), int((f & ~q).sum())
    flips_p = excess_p(b, c)
    above, below = kl_signs(quant_kl, floor_kl)
    kl_p = excess_p(above, below)
    flips_log10 = binomial_half_tail_log10(b + c, b)
    kl_log10 = binomial_half_tail_log10(above + below, above)
    reasons = []
    if flips_p < ALPHA:
        reasons.append(
            f"flips above the floor's (one-sided exact p = {p_text(flips_p, flips_log10)}, "
            f"{b} vs {c})"
        )
    if kl_p < ALPHA:
        reasons.append(
            f"KL above the floor's (sign test p = {p_text(kl_p, kl_log10)}, larger on {above} "
            f"units, smaller on {below})"
        )
    floor_mean = float(np.mean(floor_kl)) if np.size(floor_kl) else math.nan
    quant_mean = float(np.mean(quant_kl)) if np.size(quant_kl) else math.nan
    ratio = quant_mean / floor_mean if floor_mean > 0 else math.nan
    numbers = (flips_p, b, c, kl_p, above, below, ratio)
    if reasons:
        return Verdict(DIFFERENT, "; ".join(reasons), *numbers, flips_log10, kl_log10)
    reason = f"flips (p = {flips_p:.3g}) and KL (p = {kl_p:.3g}) not above the floor's"
    return Verdict(INDISTINGUISHABLE, reason, *numbers, flips_log10, kl_log10)
