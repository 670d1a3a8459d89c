"""The one KL kernel of every mode: a baseline row's compact record, and KL(P || Q) against it.

Every mode (multiple choice, corpus, generation) stores the baseline the same way and compares
a quant with it through `kl_rows`, so "KL" means one thing everywhere.

Speed matters (every scored token is a row of n_vocab logits), so each row is reduced in one
fused pass over a per-thread scratch row that stays in the CPU cache: its peak, then its float32
exponentials, summed in float64 (each term keeps float32's 1e-7 relative error, the sum does not
accumulate float32 rounding), with the ids the record keeps apart set aside in the same pass. The
functions release the GIL inside numpy's loops, so scoring threads run beside llama.cpp's decode.

The baseline record of a row (`BaselineRows`): the top K ids and log-probs, log P(tail) of
everything else, and S token ids drawn from P restricted to the tail, with their log-probs; a
log-prob is kept as the token's float32 logit and the row's float64 log-sum-exp, which gives back
exactly the float64 log-prob the kernel computes, in 8 bytes a token with its id. The
top K are found among the tokens at or above the K-th largest of the row's 64-token block maxima
(a bound the K-th largest logit never falls below), so the full row is never sorted. The tail mass
is summed over the tail itself (never 1 - P(top K), which cancels to noise when the top K holds
nearly everything), and recomputed in float64 from the logits for a row whose float32 tail terms
all underflow. Tail draws pick a 64-token block by its float64 sum, then a token inside it. KL(P ||
Q) is then

* the lower bound: the exact KL of the top K plus the merged tail, never above the full KL (log-sum
  inequality); the gap is exactly P(tail)·KL(P|tail || Q|tail);
* plus an unbiased estimate of that gap from the S tail draws x ~ P|tail, r = Q|tail(x)/P|tail(x):
  P(tail)·mean(-ln r + r·[x in B]/Q|tail(B) - 1), whose added term has mean 0 because the quant's
  full row gives Q|tail(B) exactly. B is the tail without A, the tokens the quant lifts above
  16 times the baseline's K-th probability (so at least 16 times their own). With
  A empty this is the "k3" estimator mean(r - 1 - ln r); a quant that piles mass on a few tail
  tokens makes k3's r heavy-tailed (those tokens are rarely drawn, and their r is huge when they
  are), and leaving them out of the control term recovers their -ln Q|tail(B) share exactly
  (`benchmarks/cache_kl_error.py` measures both).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Self

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IdArray = NDArray[np.int64]

# Tail draws kept per baseline row: the tail estimate's error falls as 1/sqrt(S) and its bytes grow
# as 8·S, against 8·K for the top K.
DEFAULT_TAIL_SAMPLES = 32

# A tail token the quant gives more than this many times the baseline's K-th probability counts as
# lifted out of the tail (the set A of `kl_rows`): its ratio r is at least this large. At 2 the
# real Gemma Q3_K_M/Q2_K cloze rows came out noisier than plain k3 (tokens near the top K land in A
# and their draws add a -1 spike); far-lifted tokens, the case the split is for, pass 16 as well.
LIFTED = 16.0

# Tokens per block of the top-K prefilter and the tail sampler: 4,096 blocks on a 262,144-token
# vocabulary, so the K-th largest block maximum of K = 512 leaves a few thousand candidates.
BLOCK = 64


class _Scratch(threading.local):
    """One exponentials row per thread, reused: a fresh n_vocab array per row costs its page
    faults, and a reused one stays in cache between the passes over it."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.float32)

    def row(self, n_vocab: int) -> NDArray[np.float32]:
        """A zero-padded row of whole blocks; the caller fills its first n_vocab values."""
        padded = -(-n_vocab // BLOCK) * BLOCK
        if self.values.size < padded:
            self.values = np.zeros(padded, dtype=np.float32)
        self.values[n_vocab:padded] = 0.0
        return self.values[:padded]


_scratch = _Scratch()


@dataclass(frozen=True)
class Normalized:
    """Logits of N rows with their softmax normalizer: log p = logits - lse.

    `outside`/`tail`: when the rows were normalized against a set of ids per row (the baseline's
    top K), log of each row's probability outside them, from the same pass.
    """

    logits: NDArray[np.float32]
    lse: FloatArray  # (N,)
    outside: IdArray | None = None  # (N, K)
    tail: FloatArray | None = None  # (N,)

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

        From the normalizing pass when it was given the same ids, else from one more pass.
        """
        ids = np.asarray(top_ids, dtype=np.int64)
        if self.tail is not None and self.outside is not None and np.array_equal(ids, self.outside):
            return self.tail.copy()
        tail = normalize(self.logits, ids).tail
        assert tail is not None
        return tail


def normalize(
    logits: NDArray[np.floating], outside: NDArray[np.integer] | None = None
) -> Normalized:
    """Softmax normalizer of each row (float32 exponentials, float64 sums), and with `outside`
    ((N, K) ids per row) the log-mass outside those ids, from the same pass."""
    x = np.ascontiguousarray(logits, dtype=np.float32)
    n_rows, n_vocab = x.shape
    ids = None if outside is None else np.asarray(outside, dtype=np.int64)
    lse = np.empty(n_rows)
    tail = None if ids is None else np.empty(n_rows)
    row_values = _scratch.row(n_vocab)
    exps = row_values[:n_vocab]
    for row in range(n_rows):
        peak = _exponentials(x[row], exps)
        if ids is None:
            total = float(exps.sum(dtype=np.float64))
        else:
            kept = float(exps[ids[row]].sum(dtype=np.float64))
            exps[ids[row]] = 0.0
            rest = float(exps.sum(dtype=np.float64))
            total = rest + kept
            assert tail is not None
            tail[row] = _tail_logmass(x[row], ids[row], rest, peak, total)
        lse[row] = peak + np.log(total)
    return Normalized(x, lse, ids, tail)


def _exponentials(row: NDArray[np.float32], out: NDArray[np.float32]) -> float:
    """exp(row - max(row)) into `out`; returns the max."""
    peak = row.max()
    np.subtract(row, peak, out=out)
    np.exp(out, out=out)
    return float(peak)


def _tail_logmass(
    row: NDArray[np.float32], ids: IdArray, rest: float, peak: float, total: float
) -> float:
    """log P(outside `ids`) from the float32 terms' sum `rest`; redone in float64 from the logits
    when every float32 term underflowed but some token is outside."""
    if rest > 0.0:
        return float(np.log(rest) - np.log(total))
    outside = np.ones(row.size, dtype=bool)
    outside[ids] = False
    if not outside.any():
        return -np.inf
    values = row[outside].astype(np.float64)
    top = values.max()
    if top == -np.inf:
        return -np.inf  # every token outside has probability 0
    with np.errstate(divide="ignore"):
        return float(top + np.log(np.exp(values - top).sum()) - (peak + np.log(total)))


@dataclass(frozen=True)
class BaselineRows:
    """The compact record of N baseline rows (shapes (N, K), (N, K), (N,), (N,), (N, S), (N, S)).

    A kept token's log-prob is a float32 offset from a float64 row value: log p = logit - lse.
    From `baseline_normalize` the offsets are the row's own float32 logits and `lse` their
    float64 log-sum-exp, so `top_logprobs` is bit for bit what the kernel computes from the full
    row (no rounding, at 8 bytes a token where float64 log-probs take 12).
    """

    top_ids: NDArray[np.int32]
    top_logits: NDArray[np.float32]
    lse: FloatArray
    tail_logmass: FloatArray
    sample_ids: NDArray[np.int32]
    sample_logits: NDArray[np.float32]

    @property
    def top_logprobs(self) -> FloatArray:
        """(N, K) float64 log-probs of the top K."""
        return _logprobs(self.top_logits, self.lse)

    @property
    def sample_logprobs(self) -> FloatArray:
        """(N, S) float64 log-probs of the tail draws."""
        return _logprobs(self.sample_logits, self.lse)

    @classmethod
    def of_logprobs(
        cls,
        top_ids: NDArray[np.integer],
        top_logprobs: NDArray[np.floating],
        tail_logmass: NDArray[np.floating],
        sample_ids: NDArray[np.integer],
        sample_logprobs: NDArray[np.floating],
    ) -> Self:
        """The record of float64 log-probs given as such: float32 offsets from each row's largest
        top log-prob, each rounded by at most 2^-24 of its distance to that log-prob (-inf stays
        -inf)."""
        top = np.asarray(top_logprobs, dtype=np.float64)
        peak = np.where(np.isnan(top), -np.inf, top).max(axis=-1, initial=-np.inf)
        lse = -np.where(np.isfinite(peak), peak, 0.0)
        samples = np.asarray(sample_logprobs, dtype=np.float64)
        return cls(
            top_ids=np.asarray(top_ids, dtype=np.int32),
            top_logits=(top + lse[:, None]).astype(np.float32),
            lse=lse,
            tail_logmass=np.asarray(tail_logmass, dtype=np.float64),
            sample_ids=np.asarray(sample_ids, dtype=np.int32),
            sample_logits=(samples + lse[:, None]).astype(np.float32),
        )


def _logprobs(logits: NDArray[np.float32], lse: FloatArray) -> FloatArray:
    """log p of stored float32 logits: logit - lse, in float64, as `Normalized.logprobs_at`."""
    return np.asarray(logits).astype(np.float64) - np.asarray(lse, dtype=np.float64)[:, None]


def top_k_ids(logits: NDArray[np.floating], k: int) -> IdArray:
    """The k most probable token ids of each row (N, k), most probable first, ties to the lower
    id (also at the k-th place)."""
    x = np.asarray(logits, dtype=np.float32)
    k = min(k, x.shape[-1])
    return np.stack([_top_k_row(row, k) for row in x]) if len(x) else np.zeros((0, k), np.int64)


def _top_k_row(row: NDArray[np.float32], k: int) -> IdArray:
    n_vocab = row.size
    n_blocks = n_vocab // BLOCK
    if n_blocks > k:
        # The k largest block maxima are k distinct tokens, so the k-th largest logit is at least
        # the k-th largest block maximum: every top-k token is a candidate.
        block_max = row[: n_blocks * BLOCK].reshape(n_blocks, BLOCK).max(axis=1)
        bound = np.partition(block_max, n_blocks - k)[n_blocks - k]
        candidates = np.flatnonzero(row >= bound)
    else:
        candidates = np.arange(n_vocab)
    order = np.lexsort((candidates, -row[candidates]))[:k]
    return candidates[order].astype(np.int64)


def baseline_normalize(
    logits: NDArray[np.floating], k: int, n_samples: int, rng: np.random.Generator
) -> tuple[Normalized, BaselineRows]:
    """N baseline rows normalized, and their record: top k (most probable first), tail mass and
    `n_samples` draws from the tail of each row, in one pass per row.

    Args:
        logits: N baseline rows (N, n_vocab).
        k: tokens kept per row (at most the vocabulary).
        n_samples: tail draws per row (0: no tail estimate).
        rng: the source of the draws, used row by row for the rows that have a tail; the same
            generator state gives the same record.

    Returns:
        (the normalized rows, the record); a row without a tail (k covers the vocabulary, or every
        tail term is below float32's range, which leaves under 1e-40 of the mass, while draws are
        wanted) has tail_logmass -inf and draws 0.
    """
    x = np.ascontiguousarray(logits, dtype=np.float32)
    n_rows, n_vocab = x.shape
    top_ids = top_k_ids(x, k)
    lse, tail = np.empty(n_rows), np.full(n_rows, -np.inf)
    sample_ids = np.zeros((n_rows, n_samples), dtype=np.int64)
    row_values = _scratch.row(n_vocab)
    exps, blocks = row_values[:n_vocab], row_values.reshape(-1, BLOCK)
    has_tail = top_ids.shape[1] < n_vocab
    for row in range(n_rows):
        peak = _exponentials(x[row], exps)
        ids = top_ids[row]
        kept = float(exps[ids].sum(dtype=np.float64))
        exps[ids] = 0.0
        block_sums = blocks.sum(axis=1, dtype=np.float64)
        rest = float(block_sums.sum())
        total = rest + kept
        lse[row] = peak + np.log(total)
        if not has_tail:
            continue
        tail[row] = _tail_logmass(x[row], ids, rest, peak, total)
        if n_samples and np.isfinite(tail[row]):
            if rest <= 0.0:
                tail[row] = -np.inf  # no float32 tail term to draw from
                continue
            sample_ids[row] = _draw(blocks, block_sums, rng.random(n_samples), n_vocab)
    norm = Normalized(x, lse, top_ids, tail if has_tail else None)
    record = BaselineRows(
        top_ids=top_ids.astype(np.int32),
        top_logits=np.take_along_axis(x, top_ids, axis=-1),
        lse=lse,
        tail_logmass=tail,
        sample_ids=sample_ids.astype(np.int32),
        sample_logits=np.take_along_axis(x, sample_ids, axis=-1),
    )
    return norm, record


def _draw(
    blocks: NDArray[np.float32], block_sums: FloatArray, uniforms: FloatArray, n_vocab: int
) -> IdArray:
    """The token at each uniform's share of the tail's mass: its block by the blocks' float64
    running sum, then its place by the block's own running sum (top ids are zero in `blocks`)."""
    running = np.cumsum(block_sums)
    targets = uniforms * running[-1]
    block = np.minimum(np.searchsorted(running, targets, side="right"), len(running) - 1)
    within = np.maximum(targets - (running[block] - block_sums[block]), 0.0)
    inside = np.cumsum(blocks[block], axis=1, dtype=np.float64)
    # Rounding can leave `within` at or past the block's own total: take its last token with mass.
    last = BLOCK - 1 - np.argmax(blocks[block][:, ::-1] > 0, axis=1)
    offset = np.minimum((inside <= within[:, None]).sum(axis=1), last)
    return np.minimum(block * BLOCK + offset, n_vocab - 1)


def kl_rows(base: BaselineRows, quant: Normalized) -> tuple[FloatArray, FloatArray]:
    """(lower bound, estimated tail gap) of KL(P || Q) per row; their sum estimates the exact KL.

    The lower bound merges the tail into one outcome (exact for that coarsening, never above the
    full KL); the gap estimate is P(tail)·mean(-ln r + r·[x in B]/Q|tail(B) - 1) over the stored
    tail samples (the module docstring says why), clipped at 0.

    Args:
        base: N baseline rows.
        quant: the quant's N rows at the same positions; normalized with `outside` = the
            baseline's top ids, its tail mass comes from that pass.

    Returns:
        Two (N,) float64 arrays, both >= 0.
    """
    ids = np.asarray(base.top_ids, dtype=np.int64)
    p_top = np.asarray(base.top_logprobs, dtype=np.float64)
    q_top = quant.logprobs_at(ids)
    with np.errstate(invalid="ignore"):  # a token of probability 0 adds nothing, even if q is 0
        head = np.sum(np.where(p_top > -np.inf, np.exp(p_top) * (p_top - q_top), 0.0), axis=-1)
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
            for at, row in enumerate(rows):
                kth = float(p_top[row].min())
                terms = _gap_terms(base, quant, int(row), (float(q_tail[row]), kth), log_r[at])
                gap[row] = np.exp(p_tail[row]) * terms.mean()
    return np.maximum(coarse, 0.0), np.maximum(gap, 0.0)


def _gap_terms(
    base: BaselineRows,
    quant: Normalized,
    row: int,
    logmasses: tuple[float, float],
    log_r: FloatArray,
) -> FloatArray:
    """Per tail draw of one row: -ln r + r·[x in B]/Q|tail(B) - 1, written without cancellation
    (k3 of r/Q|tail(B), minus ln Q|tail(B), for a draw in B; -ln r - 1 for one in A).
    `logmasses`: log Q(tail) and the baseline's K-th log-prob."""
    q_tail, kth_logprob = logmasses
    lifted = lifted_ids(base, quant, row, kth_logprob)
    if lifted.size == 0:
        return np.expm1(log_r) - log_r
    lifted_logprobs = quant.logits[row, lifted].astype(np.float64) - quant.lse[row]
    q_lifted = float(np.exp(lifted_logprobs - q_tail).sum())
    log_b = float(np.log1p(-min(q_lifted, 1.0)))
    in_a = np.isin(np.asarray(base.sample_ids[row], dtype=np.int64), lifted)
    if not np.isfinite(log_b):
        return np.where(in_a, -log_r - 1.0, 0.0)
    log_rb = log_r - log_b
    return np.where(in_a, -log_r - 1.0, np.expm1(log_rb) - log_rb - log_b)


def lifted_ids(base: BaselineRows, quant: Normalized, row: int, kth_logprob: float) -> IdArray:
    """The tail tokens of `row` (outside the baseline's top K) to which the quant gives more than
    LIFTED times the baseline's K-th probability (log `kth_logprob`), (n,) ids."""
    top = np.asarray(base.top_ids[row], dtype=np.int64)
    floor = kth_logprob + np.log(LIFTED) + quant.lse[row]
    above = np.flatnonzero(quant.logits[row] > floor)
    return above[~np.isin(above, top)].astype(np.int64)
