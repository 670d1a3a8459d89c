"""Typed events of corpus mode (`ggflip kld`); front ends fold them into a UI or JSON (the
report itself, its JSON schema, is `ggflip.corpus.report`).

The engine (`ggflip.corpus.engine.run_kld`) yields, in order: `KldStarted`; for the baseline
`ModelLoading`/`ModelLoaded` (from `ggflip.runs.events`) or `BaselineFromCache`; `CorpusReady`;
one `ChunkScored` per chunk and model; `BaselineKldFinished`; `QuantKldFinished` per quant;
`KldFinished` last.
`ChunkScored` carries the chunk's token pieces and, for quants, the per-token KL, so a per-token
view (text shaded by KL) can be drawn without the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.corpus.report import (
    KLD_SCHEMA_VERSION,
    BaselineKld,
    CacheInfo,
    CategoryKld,
    CategoryPpl,
    KldReport,
    QuantKld,
    TailCheck,
    TextInfo,
)
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading

__all__ = [  # the report's classes are re-exported: the events carry them
    "KLD_SCHEMA_VERSION",
    "BaselineKld",
    "BaselineKldFinished",
    "CacheInfo",
    "CategoryKld",
    "CategoryPpl",
    "ChunkScored",
    "CorpusReady",
    "KldEvent",
    "KldFinished",
    "KldReport",
    "KldStarted",
    "QuantKld",
    "QuantKldFinished",
    "TailCheck",
    "TextInfo",
]

@dataclass(frozen=True)
class KldStarted:
    """Files and vocabularies are checked; scoring is about to start."""

    set_name: str
    labels: tuple[str, ...]
    source: str
    ctx: int


@dataclass(frozen=True)
class CorpusReady:
    """The texts are tokenized and cut into chunks (scored tokens: the second half of each chunk);
    `texts` says which chunks are whose, in run order."""

    n_text_tokens: int
    n_chunks: int
    first_scored: int
    rows_per_chunk: int
    from_cache: bool
    texts: tuple[TextInfo, ...] = ()


@dataclass(frozen=True, eq=False)
class ChunkScored:
    """One chunk scored by one model.

    `pieces` is the text of every token of the chunk (BOS first); the scored tokens are
    `pieces[first_scored + 1:]`, and row j of each array is about `pieces[first_scored + 1 + j]`.
    `nll` is the model's negative log-likelihood of each scored token; `kl`, `p_diff` and
    `same_top` compare the quant with the baseline and are None for the baseline itself;
    `nll_base` is the baseline's NLL of the same tokens (quants only), so running statistics
    can be drawn with `corpus_stats.kld_stats` while the run goes on.
    """

    label: str
    role: str
    chunk: int
    n_chunks: int
    first_scored: int
    pieces: tuple[str, ...]
    nll: NDArray[np.float64]
    kl: NDArray[np.float64] | None = None
    p_diff: NDArray[np.float64] | None = None
    same_top: NDArray[np.bool_] | None = None
    nll_base: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class BaselineKldFinished:
    """The baseline's record is ready (scored now or read from the cache)."""

    summary: BaselineKld


@dataclass(frozen=True)
class QuantKldFinished:
    """A quant is scored over the whole corpus and summarized."""

    summary: QuantKld


@dataclass(frozen=True)
class KldFinished:
    """The run is over; `report.complete` says whether every model finished."""

    report: KldReport


KldEvent = (
    KldStarted
    | ModelLoading
    | ModelLoaded
    | BaselineFromCache
    | CorpusReady
    | ChunkScored
    | BaselineKldFinished
    | QuantKldFinished
    | KldFinished
)
"""Everything `run_kld` yields, in the order a run goes."""
