"""Expected acceptance rate of speculative decoding with the quant as draft and the baseline as
verifier: Σ_v min(p_v, q_v) = 1 - TV(P, Q) per scored position.

A token x drawn from the quant Q is accepted by the baseline P with probability
min(1, p_x / q_x), so the expected acceptance is Σ_v q_v · min(1, p_v / q_v) = Σ_v min(p_v, q_v).

From the baseline's compact record (top K plus the tail mass) the sum is exact over the top K,
and the tail's share Σ_{v in tail} min(p_v, q_v) is replaced by min(P(tail), Q(tail)). Since a sum
of minima is never above the minimum of the sums, this is an **upper bound** on the exact
acceptance, short of it by at most min(P(tail), Q(tail)):
exact <= `acceptance_from_top_k` <= exact + min(P(tail), Q(tail)).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def acceptance_exact(
    p_logprobs: NDArray[np.floating], q_logprobs: NDArray[np.floating]
) -> FloatArray:
    """Σ_v min(p_v, q_v) over the last axis, from two full log-probability arrays.

    Args:
        p_logprobs: (..., n_vocab) the baseline's log-probabilities.
        q_logprobs: (..., n_vocab) the quant's, same vocabulary.

    Returns:
        (...,) float64 in [0, 1].
    """
    p = np.exp(np.asarray(p_logprobs, dtype=np.float64))
    q = np.exp(np.asarray(q_logprobs, dtype=np.float64))
    return np.clip(np.minimum(p, q).sum(axis=-1), 0.0, 1.0)


def acceptance_from_top_k(
    p_top_logprobs: NDArray[np.floating],
    p_tail_logmass: NDArray[np.floating],
    q_top_logprobs: NDArray[np.floating],
) -> FloatArray:
    """The acceptance rate from the baseline's top K and tail mass: an upper bound of the exact one.

    Exact over the top K; the tail contributes min(P(tail), Q(tail)), Q(tail) being 1 minus the
    quant's mass on the baseline's top K (a probability, so float64 subtraction loses nothing
    that matters at the 1e-15 scale of the result).

    Args:
        p_top_logprobs: (N, K) the baseline's log-probabilities of its top K.
        p_tail_logmass: (N,) log P(tail), -inf when the top K is the whole vocabulary.
        q_top_logprobs: (N, K) the quant's log-probabilities of the same K ids.

    Returns:
        (N,) float64 in [0, 1]; never below `acceptance_exact` of the full rows.
    """
    p_top = np.exp(np.asarray(p_top_logprobs, dtype=np.float64))
    q_top = np.exp(np.asarray(q_top_logprobs, dtype=np.float64))
    p_tail = np.exp(np.asarray(p_tail_logmass, dtype=np.float64))
    q_tail = np.clip(1.0 - q_top.sum(axis=-1), 0.0, 1.0)
    head = np.minimum(p_top, q_top).sum(axis=-1)
    return np.clip(head + np.minimum(p_tail, q_tail), 0.0, 1.0)


def acceptance_p10(values: NDArray[np.floating]) -> float:
    """The 10th percentile of per-position (or per-question) acceptance rates; nan when empty."""
    x = np.asarray(values, dtype=np.float64)
    return float(np.quantile(x, 0.1)) if x.size else float("nan")
