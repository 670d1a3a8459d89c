"""Distribution kernels: log-softmax, exact and top-K/tail KL, normalized rows, option margins.

Distribution math runs in float64: a log-softmax over a 262,144-token vocabulary in float32
loses digits in the normalizer, which shows up as KL of order 1e-4 between identical models.
KL(P || Q) uses the baseline P as reference, as in the paper and llama-perplexity.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def log_softmax(logits: NDArray[np.floating]) -> FloatArray:
    """Log-probabilities over the last axis, in float64 (max-shifted logsumexp)."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def logsumexp(values: NDArray[np.floating], axis: int = -1) -> FloatArray:
    """log(sum(exp(values))) over `axis`, stable for very negative inputs and -inf."""
    x = np.asarray(values, dtype=np.float64)
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    total = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return np.squeeze(total, axis=axis)


def kl_divergence(p_logprobs: NDArray[np.floating], q_logprobs: NDArray[np.floating]) -> FloatArray:
    """Exact KL(P || Q) over the last axis from two log-probability arrays of one vocabulary."""
    p = np.asarray(p_logprobs, dtype=np.float64)
    q = np.asarray(q_logprobs, dtype=np.float64)
    probs = np.exp(p)
    # Tokens with p == 0 contribute nothing, even where q is also -inf.
    with np.errstate(invalid="ignore"):
        terms = np.where(probs > 0, probs * (p - q), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


def tail_log_mass(logprobs: NDArray[np.floating], top_ids: NDArray[np.integer]) -> float:
    """log of the probability outside `top_ids`, summed over the full distribution (-inf if empty).

    Summing the tail itself, rather than taking 1 - sum(top), keeps its precision when the
    top tokens hold nearly all the mass.
    """
    outside = np.ones(np.shape(logprobs)[-1], dtype=bool)
    outside[np.asarray(top_ids, dtype=np.int64)] = False
    if not outside.any():
        return -math.inf
    return float(logsumexp(np.asarray(logprobs, dtype=np.float64)[outside]))


def kl_from_top_k(
    top_ids: NDArray[np.integer],
    top_logprobs: NDArray[np.floating],
    tail_logmass: float,
    q_logprobs: NDArray[np.floating],
) -> float:
    """KL(P || Q) where P is known only by its top-K tokens plus the mass of everything else.

    The tokens outside the top K are merged into one "tail" outcome in both distributions, so
    this is the exact KL of the coarsened pair. By the log-sum inequality it is never above the
    exact full-vocabulary KL; the gap is the tail's own share, P(tail) * KL(P|tail || Q|tail).

    Args:
        top_ids: (K,) token ids of P's top K.
        top_logprobs: (K,) P's log-probabilities of those tokens.
        tail_logmass: log P(tail), -inf when the top K is the whole vocabulary.
        q_logprobs: (n_vocab,) Q's full log-probabilities.
    """
    p_top = np.asarray(top_logprobs, dtype=np.float64)
    q_full = np.asarray(q_logprobs, dtype=np.float64)
    q_top = q_full[np.asarray(top_ids, dtype=np.int64)]
    head = float(np.sum(np.exp(p_top) * (p_top - q_top)))
    tail = 0.0
    if math.isfinite(tail_logmass):
        q_tail = tail_log_mass(q_full, top_ids)
        tail = math.exp(tail_logmass) * (tail_logmass - q_tail)
    return max(head + tail, 0.0)


def tail_log_mass_rows(logprobs: NDArray[np.floating], top_ids: NDArray[np.integer]) -> FloatArray:
    """Row-wise `tail_log_mass`: log of each row's probability outside its own `top_ids` row.

    Args:
        logprobs: (N, n_vocab) log-probabilities.
        top_ids: (N, K) token ids per row.

    Returns:
        (N,) float64, -inf for a row whose ids cover the whole vocabulary.
    """
    outside = np.array(logprobs, dtype=np.float64, copy=True)
    np.put_along_axis(outside, np.asarray(top_ids, dtype=np.int64), -np.inf, axis=-1)
    with np.errstate(divide="ignore"):
        return logsumexp(outside, axis=-1)


def kl_from_top_k_rows(
    top_ids: NDArray[np.integer],
    top_logprobs: NDArray[np.floating],
    tail_logmass: NDArray[np.floating],
    q_logprobs: NDArray[np.floating],
) -> FloatArray:
    """Row-wise `kl_from_top_k`: (N,) coarsened KL(P || Q), each a lower bound of the exact KL.

    Args:
        top_ids: (N, K) ids of P's top K per row.
        top_logprobs: (N, K) P's log-probabilities of those ids.
        tail_logmass: (N,) log P(tail), -inf where the top K is the whole vocabulary.
        q_logprobs: (N, n_vocab) Q's full log-probabilities.
    """
    ids = np.asarray(top_ids, dtype=np.int64)
    p_top = np.asarray(top_logprobs, dtype=np.float64)
    q_full = np.asarray(q_logprobs, dtype=np.float64)
    q_top = np.take_along_axis(q_full, ids, axis=-1)
    head = np.sum(np.exp(p_top) * (p_top - q_top), axis=-1)
    p_tail = np.asarray(tail_logmass, dtype=np.float64)
    q_tail = tail_log_mass_rows(q_full, ids)
    with np.errstate(invalid="ignore"):
        tail = np.where(np.isfinite(p_tail), np.exp(p_tail) * (p_tail - q_tail), 0.0)
    return np.maximum(head + tail, 0.0)


def top_k(logprobs: NDArray[np.floating], k: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The k most probable token ids (sorted, most probable first) and their log-probs."""
    x = np.asarray(logprobs)
    k = min(k, x.shape[-1])
    part = np.argpartition(-x, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(x, part, axis=-1), axis=-1, kind="stable")
    ids = np.take_along_axis(part, order, axis=-1)
    return ids.astype(np.int32), np.take_along_axis(x, ids, axis=-1).astype(np.float32)


def option_distribution(option_logprobs: NDArray[np.floating]) -> FloatArray:
    """Probabilities renormalized over the answer options (sum to 1)."""
    return np.exp(log_softmax(option_logprobs))


def top_margin(option_probs: NDArray[np.floating]) -> FloatArray:
    """Best option's probability minus the second best's, over the last axis."""
    ordered = np.sort(np.asarray(option_probs, dtype=np.float64), axis=-1)
    return ordered[..., -1] - ordered[..., -2]


class NormalizedRows:
    """Full-vocabulary log-probabilities of R rows without materializing them: logits plus a float64
    normalizer.

    One float64 pass computes each row's log-normalizer (max-shifted log-sum-exp, as
    `log_softmax`); log-probabilities are then gathered only where needed (`at`), and the
    tail mass outside chosen ids is summed from the same exponentials (`tail_log_mass`).
    This reads the 262k-wide rows about half as often as `log_softmax` + `kl_from_top_k`.
    """

    def __init__(self, logits: NDArray[np.floating]) -> None:
        x = np.asarray(logits)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        self.logits = x.reshape(1, -1) if x.ndim == 1 else x
        peak = self.logits.max(axis=-1, keepdims=True).astype(np.float64)
        shifted = np.subtract(self.logits, peak, dtype=np.float64)
        self._exp = np.exp(shifted, out=shifted)
        self._peak = peak[:, 0]
        self._total = self._exp.sum(axis=-1)
        self.log_z = np.log(self._total) + self._peak

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def at(self, ids: NDArray[np.integer]) -> FloatArray:
        """Log-probabilities at `ids`: (R, K) ids give (R, K); (K,) ids are taken from every row."""
        index = np.asarray(ids, dtype=np.int64)
        if index.ndim == 1:
            index = np.broadcast_to(index, (len(self), index.shape[0]))
        return (
            np.take_along_axis(self.logits, index, axis=-1).astype(np.float64) - self.log_z[:, None]
        )

    def argmax(self) -> NDArray[np.int64]:
        return np.argmax(self.logits, axis=-1)

    def full(self) -> FloatArray:
        """Every log-probability, (R, V) float64."""
        return self.logits.astype(np.float64) - self.log_z[:, None]

    def tail_log_mass(self, ids: NDArray[np.integer]) -> FloatArray:
        """Per row, log of the probability outside that row's `ids` (R, K); -inf when nothing is
        left."""
        index = np.asarray(ids, dtype=np.int64)
        saved = np.take_along_axis(self._exp, index, axis=-1)
        np.put_along_axis(self._exp, index, 0.0, axis=-1)
        outside = self._exp.sum(axis=-1)
        np.put_along_axis(self._exp, index, saved, axis=-1)
        with np.errstate(divide="ignore"):
            return np.log(outside) - np.log(self._total)


def kl_from_top_k_normalized(
    top_ids: NDArray[np.integer],
    top_logprobs: NDArray[np.floating],
    tail_logmass: NDArray[np.floating],
    q: NormalizedRows,
) -> FloatArray:
    """`kl_from_top_k_rows` with the quant given as NormalizedRows (no full log-prob rows)."""
    p_top = np.asarray(top_logprobs, dtype=np.float64)
    head = np.sum(np.exp(p_top) * (p_top - q.at(top_ids)), axis=-1)
    p_tail = np.asarray(tail_logmass, dtype=np.float64)
    finite = np.isfinite(p_tail)
    tail = np.zeros_like(head)
    if finite.any():
        q_tail = q.tail_log_mass(top_ids)
        tail[finite] = np.exp(p_tail[finite]) * (p_tail[finite] - q_tail[finite])
    return np.maximum(head + tail, 0.0)
