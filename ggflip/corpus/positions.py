"""KL by position: a quant's damage by how far into its chunk a token is.

Damage grows with context (a quantized KV cache, long-range attention), so every corpus report
splits its scored tokens by position in the chunk into buckets of growing width: 0–511,
512–2,047, 2,048–8,191, 8,192–32,767, ... (each bucket four times the last's end), cut at the
context. A bucket holds the rows whose position `p` (the row predicts token p + 1 from the p + 1
tokens before it) falls in it; with llama-perplexity's chunking only the second half of each
chunk is scored (`--score-from 0` scores every position). Per bucket: the tokens, KL mean,
same-top share and the PPL ratio exp(mean(NLL quant − NLL baseline)) (PPL(Q)/PPL(base) of those
tokens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ggflip.corpus.stats import FloatArray

FIRST_EDGE = 512
GROWTH = 4


def bucket_edges(ctx: int) -> list[tuple[int, int]]:
    """The position buckets [lo, hi] (inclusive) of a chunk of `ctx` tokens, the last cut at the
    last scorable position ctx - 2."""
    edges, lo, hi = [], 0, FIRST_EDGE
    while lo <= ctx - 2:
        edges.append((lo, min(hi, ctx - 1) - 1))
        lo, hi = hi, hi * GROWTH
    return edges


def bucket_label(lo: int, hi: int) -> str:
    """`0–511`, `2,048–8,191`."""
    return f"{lo:,}–{hi:,}"


@dataclass(frozen=True)
class PositionBucket:
    """One position bucket's tokens and their KL mean, same-top share and PPL ratio."""

    lo: int
    hi: int
    n_tokens: int
    kl_mean: float
    same_top: float
    ppl_ratio: float

    @property
    def label(self) -> str:
        return bucket_label(self.lo, self.hi)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def position_buckets(
    kl: FloatArray,
    same_top: np.ndarray,
    nll: FloatArray,
    nll_base: FloatArray,
    first_scored: int,
    ctx: int,
) -> tuple[PositionBucket, ...]:
    """The buckets holding scored rows, from per-row arrays of whole chunks in order (each chunk
    `ctx - 1 - first_scored` rows, row j at position first_scored + j)."""
    rows_per_chunk = ctx - 1 - first_scored
    if rows_per_chunk <= 0 or kl.size == 0:
        return ()
    positions = first_scored + np.arange(kl.size) % rows_per_chunk
    out = []
    for lo, hi in bucket_edges(ctx):
        mask = (positions >= lo) & (positions <= hi)
        n = int(mask.sum())
        if n == 0:
            continue
        out.append(
            PositionBucket(
                lo,
                hi,
                n,
                float(kl[mask].mean()),
                float(same_top[mask].mean()),
                float(np.exp((nll[mask] - nll_base[mask]).mean())),
            )
        )
    return tuple(out)
