"""The one KL kernel of every mode: a baseline row's compact record, and KL(P || Q) against it.

Every mode (multiple choice, corpus, generation) stores the baseline the same way and compares
a quant with it through `kl_rows`, so "KL" means one thing everywhere.

Speed matters (every scored token touches n_vocab values twice per model), so the normalizer
exponentiates in float32 but sums in float64: each term keeps float32's 1e-7 relative error,
but the sum does not accumulate float32 rounding.

The baseline record of a row (`BaselineRows`): the top K ids and log-probs, log P(tail) of
everything else, and S token ids drawn from P restricted to the tail, with their log-probs. The
tail mass is summed over the tail itself (never 1 - P(top K), which cancels to noise when the top
K holds nearly everything), and recomputed in float64 from the logits for a row whose float32
tail terms all underflow. KL(P || Q) is then

* the lower bound: the exact KL of the top K plus the merged tail, never above the full KL (log-sum
  inequality); the gap is exactly P(tail)·KL(P|tail || Q|tail);
* plus an unbiased, never-negative estimate of that gap from the S tail draws:
  P(tail)·mean(r - 1 - ln r), r = Q|tail(x)/P|tail(x) (the "k3" estimator: E[r - 1] = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# Tail draws kept per baseline row: the tail estimate's error falls as 1/sqrt(S) and its bytes grow
# as 8·S, against 8·K for the top K.
DEFAULT_TAIL_SAMPLES = 32


@dataclass(frozen=True)
class Normalized:
    """Logits of N rows with their softmax normalizer: log p = logits - lse."""

    logits: NDArray[np.float32]
    scaled: NDArray[np.float32]  # exp(logits - peak), (N, n_vocab)
    total: FloatArray  # sum of scaled, float64, (N,)
    lse: FloatArray  # peak + log(total), (N,)

    def logprobs_at(self, ids: NDArray[np.integer]) -> FloatArray:
        """log p of the given ids per row, float64, shape of `ids` ((N,) or (N, k))."""
        idx = np.asarray(ids, dtype=np.int64)
        flat = idx.ndim == 1
        values = np.take_along_axis(self.logits, idx[:, None] if flat else idx, axis=-1).astype(
            np.float64
        )
        out = values - self.lse[:, None]
        return out[:, 0] if flat else out

    def argmax(self) -> NDArray[np.int64]:
        """The most probable token of each row, (N,)."""
        return np.argmax(self.logits, axis=-1)

    def tail_logmass(self, top_ids: NDArray[np.integer]) -> FloatArray:
        """log of each row's probability outside its `top_ids` (N, K), -inf when nothing is left.

        The tail's own terms are summed. Where every one of them underflows float32 (a tail more
        than ~100 nats below the peak), the row is redone in float64 from its logits, so a tail
        that is tiny but not empty is never taken for zero.
        """
        ids = np.asarray(top_ids, dtype=np.int64)
        kept = np.take_along_axis(self.scaled, ids, axis=-1)
        np.put_along_axis(self.scaled, ids, 0.0, axis=-1)
        try:
            rest = self.scaled.sum(axis=-1, dtype=np.float64)
        finally:
            np.put_along_axis(self.scaled, ids, kept, axis=-1)
        with np.errstate(divide="ignore"):
            out = np.log(rest) - np.log(self.total)
        n_vocab = self.logits.shape[-1]
        for row in np.flatnonzero(rest <= 0.0):
            outside = np.ones(n_vocab, dtype=bool)
            outside[ids[row]] = False
            if outside.any():
                tail = self.logits[row][outside].astype(np.float64)
                with np.errstate(divide="ignore"):
                    peak = tail.max()
                    out[row] = peak + np.log(np.exp(tail - peak).sum()) - self.lse[row]
        return out


def normalize(logits: NDArray[np.floating]) -> Normalized:
    """Softmax normalizer of each row: float32 exponentials, float64 sums."""
    x = np.asarray(logits, dtype=np.float32)
    peak = x.max(axis=-1)
    scaled = np.exp(x - peak[:, None])
    total = scaled.sum(axis=-1, dtype=np.float64)
    return Normalized(x, scaled, total, peak.astype(np.float64) + np.log(total))


@dataclass(frozen=True)
class BaselineRows:
    """The compact record of N baseline rows (shapes (N, K), (N, K), (N,), (N, S), (N, S))."""

    top_ids: NDArray[np.int32]
    top_logprobs: NDArray[np.float32]
    tail_logmass: FloatArray
    sample_ids: NDArray[np.int32]
    sample_logprobs: NDArray[np.float32]


def top_k_ids(logits: NDArray[np.floating], k: int) -> NDArray[np.int64]:
    """The k most probable token ids of each row (N, k), most probable first (ties: lower id)."""
    k = min(k, logits.shape[-1])
    part = np.argpartition(-logits, k - 1, axis=-1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(logits, part, axis=-1)), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def baseline_rows(
    norm: Normalized, k: int, n_samples: int, rng: np.random.Generator
) -> BaselineRows:
    """Top k (most probable first), tail mass and `n_samples` draws from the tail of each row.

    Args:
        norm: N baseline rows.
        k: tokens kept per row (at most the vocabulary).
        n_samples: tail draws per row (0: no tail estimate).
        rng: the source of the draws; the same generator state gives the same record.

    Returns:
        The record; a row without a tail (k covers the vocabulary, or every tail term is below
        float32's range, which leaves under 1e-40 of the mass) has tail_logmass -inf and draws 0.
    """
    n_rows, n_vocab = norm.logits.shape
    top_ids = top_k_ids(norm.logits, k)
    tail = norm.tail_logmass(top_ids) if top_ids.shape[1] < n_vocab else np.full(n_rows, -np.inf)
    sample_ids = np.zeros((n_rows, n_samples), dtype=np.int64)
    if n_samples and top_ids.shape[1] < n_vocab:
        weights = norm.scaled.copy()
        np.put_along_axis(weights, top_ids, 0.0, axis=-1)
        for row in range(n_rows):
            if not np.isfinite(tail[row]):
                continue
            cumulative = np.cumsum(weights[row], dtype=np.float64)
            if cumulative[-1] <= 0:
                tail[row] = -np.inf  # no float32 tail term to draw from
                continue
            draws = rng.random(n_samples) * cumulative[-1]
            sample_ids[row] = np.minimum(
                np.searchsorted(cumulative, draws, side="right"), n_vocab - 1
            )
    return BaselineRows(
        top_ids=top_ids.astype(np.int32),
        top_logprobs=norm.logprobs_at(top_ids).astype(np.float32),
        tail_logmass=tail,
        sample_ids=sample_ids.astype(np.int32),
        sample_logprobs=norm.logprobs_at(sample_ids).astype(np.float32),
    )


def kl_rows(base: BaselineRows, quant: Normalized) -> tuple[FloatArray, FloatArray]:
    """(lower bound, estimated tail gap) of KL(P || Q) per row; their sum estimates the exact KL.

    The lower bound merges the tail into one outcome (exact for that coarsening, never above the
    full KL); the gap estimate is P(tail)·mean(r - 1 - ln r) over the stored tail samples.

    Args:
        base: N baseline rows.
        quant: the quant's N rows at the same positions.

    Returns:
        Two (N,) float64 arrays, both >= 0.
    """
    ids = np.asarray(base.top_ids, dtype=np.int64)
    p_top = np.asarray(base.top_logprobs, dtype=np.float64)
    q_top = quant.logprobs_at(ids)
    head = np.sum(np.exp(p_top) * (p_top - q_top), axis=-1)
    p_tail = np.asarray(base.tail_logmass, dtype=np.float64)
    has_tail = np.isfinite(p_tail)
    coarse = head.copy()
    gap = np.zeros_like(head)
    if has_tail.any():
        q_tail = quant.tail_logmass(ids)
        coarse[has_tail] += np.exp(p_tail[has_tail]) * (p_tail[has_tail] - q_tail[has_tail])
        if base.sample_ids.shape[1]:
            rows = np.flatnonzero(has_tail)
            p_s = np.asarray(base.sample_logprobs[rows], dtype=np.float64) - p_tail[rows, None]
            q_all = quant.logprobs_at(np.asarray(base.sample_ids, dtype=np.int64))
            log_r = q_all[rows] - q_tail[rows, None] - p_s
            gap[rows] = np.exp(p_tail[rows]) * (np.expm1(log_r) - log_r).mean(axis=-1)
    return np.maximum(coarse, 0.0), np.maximum(gap, 0.0)
