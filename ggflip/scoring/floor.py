"""The noise floor's verdict: is a quant's damage more than the baseline's own arithmetic noise?

The floor is the baseline scored a second time under another valid computation (another decode
grouping); its flips and KL against the first pass are what batching alone does. A quant is
`indistinguishable` from the baseline when both hold:

- its flips are not significantly more than the floor's: on the questions both scored, with
  b = flipped by the quant only and c = flipped by the floor only, the one-sided exact
  binomial test P(X >= b), X ~ Binomial(b + c, 1/2), gives p >= 0.05 (the paired sign test:
  under "no more flips than the floor" each discordant question is a fair coin);
- its mean KL is within the floor's 95% interval (not above the interval's upper end).

Otherwise it is `different`, and the reason names which condition failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

INDISTINGUISHABLE = "indistinguishable"
DIFFERENT = "different"
ALPHA = 0.05


def excess_flips_p(n_quant_only: int, n_floor_only: int) -> float:
    """One-sided exact p-value that the quant flips more questions than the floor.

    P(X >= n_quant_only) for X ~ Binomial(n_quant_only + n_floor_only, 1/2); 1 when neither
    flipped a question the other did not.
    """
    if n_quant_only < 0 or n_floor_only < 0:
        raise ValueError("counts must be 0 or more")
    n = n_quant_only + n_floor_only
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) for i in range(n_quant_only, n + 1)) / 2.0**n)


@dataclass(frozen=True)
class Verdict:
    """A quant against the floor: the verdict, why, and the numbers it rests on."""

    verdict: str
    reason: str
    flips_p: float
    n_quant_only: int
    n_floor_only: int
    kl_mean_over_floor: float


def verdict(
    quant_flipped: NDArray[np.bool_],
    floor_flipped: NDArray[np.bool_],
    quant_kl_mean: float,
    floor_kl_mean: float,
    floor_kl_ci: tuple[float, float],
) -> Verdict:
    """The verdict of one quant, from paired per-question flip flags over the same questions.

    Args:
        quant_flipped, floor_flipped: (n,) whether the quant / the floor flipped each question
            (against the baseline's answer's correctness), aligned on the same questions.
        quant_kl_mean: the quant's mean KL.
        floor_kl_mean, floor_kl_ci: the floor's mean KL and its 95% interval.
    """
    q = np.asarray(quant_flipped, dtype=bool)
    f = np.asarray(floor_flipped, dtype=bool)
    if q.shape != f.shape:
        raise ValueError("the quant's and the floor's flips must be paired on the same questions")
    b, c = int((q & ~f).sum()), int((f & ~q).sum())
    p = excess_flips_p(b, c)
    reasons = []
    if p < ALPHA:
        reasons.append(f"flips above the floor's (one-sided exact p = {p:.3g}, {b} vs {c})")
    high = floor_kl_ci[1]
    if not (quant_kl_mean <= high or (math.isnan(high) and quant_kl_mean <= floor_kl_mean)):
        reasons.append(f"KL mean {quant_kl_mean:.4g} above the floor's 95% interval (≤ {high:.4g})")
    ratio = quant_kl_mean / floor_kl_mean if floor_kl_mean > 0 else math.nan
    if reasons:
        return Verdict(DIFFERENT, "; ".join(reasons), p, b, c, ratio)
    reason = f"flips not above the floor's (p = {p:.3g}) and KL mean within its 95% interval"
    return Verdict(INDISTINGUISHABLE, reason, p, b, c, ratio)
