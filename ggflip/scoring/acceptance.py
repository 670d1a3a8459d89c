"""Expected acceptance rate of speculative decoding with the quant as draft and the baseline as
verifier: Σ_v min(p_v, q_v) = 1 - TV(P, Q) per scored position.

A token x drawn from the quant Q is accepted by the baseline P with probability
min(1, p_x / q_x), so the expected acceptance is Σ_v q_v · min(1, p_v / q_v) = Σ_v min(p_v, q_v).

From the baseline's compact record (`ggflip.scoring.topk.BaselineRows`) the sum is exact over the
top K. The tail's share Σ_{v in tail} min(p_v, q_v) = P(tail)·E_{x ~ P|tail}[min(1, q_x / p_x)] is
**estimated without bias** from the record's S tail draws, P(tail)·mean(min(1, q_x / p_x)) (each
term in [0, 1], so its standard error is at most P(tail)/(2·sqrt(S))), then clipped to
[0, min(P(tail), Q(tail))], where the exact share always lies (a clip that can only move it
closer). Without draws (S = 0) the share is min(P(tail), Q(tail)) itself, an upper bound: since a
sum of minima is never above the minimum of the sums, exact <= that <= exact + min(P(tail),
Q(tail)).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.topk import BaselineRows, Normalized

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


def acceptance_rows(base: BaselineRows, quant: Normalized) -> FloatArray:
    """Σ min(p, q) per row from the baseline's record: exact over the top K, the tail's share
    estimated from the tail draws (the module docstring says how, and what it is without them).

    Args:
        base: N baseline rows.
        quant: the quant's N rows at the same positions; normalized with `outside` = the
            baseline's top ids, its tail mass comes from that pass.

    Returns:
        (N,) float64 in [0, 1].
    """
    ids = np.asarray(base.top_ids, dtype=np.int64)
    p_top = np.exp(np.asarray(base.top_logprobs, dtype=np.float64))
    head = np.minimum(p_top, np.exp(quant.logprobs_at(ids))).sum(axis=-1)
    log_p_tail = np.asarray(base.tail_logmass, dtype=np.float64)
    has_tail = np.isfinite(log_p_tail)
    if not has_tail.any():
        return np.clip(head, 0.0, 1.0)
    p_tail = np.exp(log_p_tail)
    ceiling = np.where(has_tail, np.minimum(p_tail, np.exp(quant.tail_logmass(ids))), 0.0)
    share = ceiling
    if base.sample_ids.shape[1]:
        q_s = quant.logprobs_at(np.asarray(base.sample_ids, dtype=np.int64))
        ratio = np.exp(np.minimum(q_s - np.asarray(base.sample_logprobs, dtype=np.float64), 0.0))
        share = np.where(has_tail, np.minimum(p_tail * ratio.mean(axis=-1), ceiling), 0.0)
    return np.clip(head + share, 0.0, 1.0)


def acceptance_from_top_k(
    p_top_logprobs: NDArray[np.floating],
    p_tail_logmass: NDArray[np.floating],
    q_top_logprobs: NDArray[np.floating],
) -> FloatArray:
    """The acceptance rate from the top K and tail mass alone: an upper bound of the exact one.

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
