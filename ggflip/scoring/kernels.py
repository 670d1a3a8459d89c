"""Small distribution kernels: float64 log-softmax, logsumexp, exact KL, option margins.

`kl_divergence` over full float64 rows is the reference the compact-record KL of
`ggflip.scoring.topk` (the one every mode uses) is tested against, and the KL over the answer
options. KL(P || Q) uses the baseline P as reference, as in the paper and llama-perplexity.
"""

from __future__ import annotations

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


def option_distribution(option_logprobs: NDArray[np.floating]) -> FloatArray:
    """Probabilities renormalized over the answer options (sum to 1)."""
    return np.exp(log_softmax(option_logprobs))


def top_margin(option_probs: NDArray[np.floating]) -> FloatArray:
    """Best option's probability minus the second best's, over the last axis."""
    ordered = np.sort(np.asarray(option_probs, dtype=np.float64), axis=-1)
    return ordered[..., -1] - ordered[..., -2]
