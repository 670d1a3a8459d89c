"""Row-wise full-vocabulary math of corpus mode: the baseline's compact record and KL against it.

Speed matters here (every scored token touches n_vocab values twice per model), so the
normalizer exponentiates in float32 but sums in float64: each term keeps float32's 1e-7
relative error, but the sum (the normalizer) does not accumulate float32 rounding, which is
what makes a pure float32 log-softmax drift by 1e-4 over 262,144 tokens. The tail mass is the
normalizer minus the top K's share, both summed in float64 from the same float32 terms.

The baseline record of a row: top K ids and log-probs, log P(tail), and S token ids drawn
from P restricted to the tail, with their log-probs. KL(P || Q) is then the exact KL of the top
K plus the merged tail (`kernels.kl_from_top_k_rows`, a lower bound), plus an unbiased,
never-negative estimate of the missing part P(tail)·KL(P|tail || Q|tail) from the samples:
P(tail)·mean(r - 1 - ln r), r = Q|tail(x)/P|tail(x) (the "k3" estimator: E[r - 1] = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


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

    def tail_logmass(self, top_ids: NDArray[np.integer]) -> FloatArray:
        """log of each row's probability outside its `top_ids`, -inf when nothing is left."""
        head = np.take_along_axis(self.scaled, np.asarray(top_ids, dtype=np.int64), axis=-1).sum(
            axis=-1, dtype=np.float64
        )
        rest = np.maximum(self.total - head, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(rest) - np.log(self.total)


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


def baseline_rows(
    norm: Normalized, k: int, n_samples: int, rng: np.random.Generator
) -> BaselineRows:
    """Top k (most probable first), tail mass and `n_samples` draws from the tail of each row."""
    n_rows, n_vocab = norm.logits.shape
    k = min(k, n_vocab)
    part = np.argpartition(-norm.logits, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(norm.logits, part, axis=-1), axis=-1, kind="stable")
    top_ids = np.take_along_axis(part, order, axis=-1)
    tail = norm.tail_logmass(top_ids) if k < n_vocab else np.full(n_rows, -np.inf)
    sample_ids = np.zeros((n_rows, n_samples), dtype=np.int64)
    if n_samples and k < n_vocab:
        weights = norm.scaled.copy()
        np.put_along_axis(weights, top_ids, 0.0, axis=-1)
        for row in range(n_rows):
            if not np.isfinite(tail[row]):
                continue
            cumulative = np.cumsum(weights[row], dtype=np.float64)
            if cumulative[-1] <= 0:
                tail[row] = -np.inf  # the top K holds every float32 term: nothing to draw
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
    """(coarsened KL, estimated tail gap) per row; their sum estimates the exact KL(P || Q).

    The coarsened KL merges the tail into one outcome (exact for that coarsening, never above
    the full KL); the gap estimate is P(tail)·mean(r - 1 - ln r) over the stored tail samples.
    """
    ids = np.asarray(base.top_ids, dtype=np.int64)
    p_top = np.asarray(base.top_logprobs, dtype=np.float64)
    q_top = quant.logprobs_at(ids)
    head = np.sum(np.exp(p_top) * (p_top - q_top), axis=-1)
    p_tail = np.asarray(base.tail_logmass, dtype=np.float64)
    q_tail = quant.tail_logmass(ids)
    has_tail = np.isfinite(p_tail)
    with np.errstate(invalid="ignore", over="ignore"):
        tail = np.where(has_tail, np.exp(p_tail) * (p_tail - q_tail), 0.0)
        coarse = np.maximum(head + tail, 0.0)
        gap = np.zeros_like(coarse)
        if base.sample_ids.shape[1]:
            p_s = np.asarray(base.sample_logprobs, dtype=np.float64) - p_tail[:, None]
            q_s = quant.logprobs_at(np.asarray(base.sample_ids, dtype=np.int64)) - q_tail[:, None]
            log_r = q_s - p_s
            terms = np.expm1(log_r) - log_r
            gap = np.where(has_tail, np.exp(p_tail) * terms.mean(axis=-1), 0.0)
    return coarse, gap
