"""Per-token scores of a corpus run summarized over the whole corpus and over each text.

Each text's rows are a contiguous span of the run's rows (its chunks are consecutive), so a
category's statistics are `kld_stats` over that span: the very numbers a run on that text alone
gives, since the text is chunked and scored the same way there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ggflip.corpus.positions import position_buckets
from ggflip.corpus.report import (
    MODE,
    BaselineKld,
    CategoryKld,
    CategoryPpl,
    QuantKld,
    TailCheck,
    TextInfo,
)
from ggflip.corpus.stats import FloatArray, KldStats, TokenScores, kld_stats, mean_and_uncertainty
from ggflip.scoring import metrics
from ggflip.scoring.criteria import kl_equivalence
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins


def text_rows(text: TextInfo, rows_per_chunk: int) -> slice:
    """The run's rows (scored tokens) that belong to `text`."""
    start = text.first_chunk * rows_per_chunk
    return slice(start, start + text.n_chunks * rows_per_chunk)


def perplexity(nll: FloatArray) -> tuple[float, float]:
    """PPL and its uncertainty from per-token NLLs, as llama-perplexity prints them."""
    log_ppl, unc = mean_and_uncertainty(nll)
    ppl = float(np.exp(log_ppl))
    return ppl, ppl * unc


def baseline_summary(
    label: str,
    path: str,
    nll_base: FloatArray,
    texts: Sequence[TextInfo],
    rows_per_chunk: int,
    seconds: float,
    from_cache: bool,
    computed_with: dict[str, Any],
) -> BaselineKld:
    """The baseline's perplexity over the corpus and on each text."""
    by_category = tuple(
        CategoryPpl(text.name, *perplexity(nll_base[text_rows(text, rows_per_chunk)]))
        for text in texts
    )
    return BaselineKld(
        label,
        path,
        *perplexity(nll_base),
        seconds,
        from_cache,
        computed_with=computed_with,
        by_category=by_category,
    )


@dataclass(frozen=True)
class QuantScores:
    """A quant's per-token arrays over every scored row of the run, all (n_rows,).

    `kl_lower` is the cache's lower bound of KL (top K + merged tail), `kl_gap` the estimated
    missing part; their sum is the KL reported.
    """

    nll: FloatArray
    nll_base: FloatArray
    kl_lower: FloatArray
    kl_gap: FloatArray
    same_top: np.ndarray
    acceptance: FloatArray

    def summary(self, rows: slice) -> tuple[KldStats, TailCheck, dict[str, float]]:
        """llama-perplexity's statistics, the tail check and the registered corpus metrics beyond
        them (`extra_metrics`) over `rows`."""
        gap = self.kl_gap[rows]
        n = gap.size
        scores = TokenScores(
            self.nll[rows],
            self.nll_base[rows],
            self.kl_lower[rows] + gap,
            self.same_top[rows],
            self.acceptance[rows],
        )
        tail = TailCheck(
            float(self.kl_lower[rows].mean()),
            float(gap.mean()),
            float(gap.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        )
        stats = kld_stats(scores)
        return stats, tail, extra_metrics(scores, stats)


def quant_summary(
    label: str,
    path: str,
    scores: QuantScores,
    texts: Sequence[TextInfo],
    chunking: tuple[int, int],
    seconds: float,
    margins: Margins = DEFAULT_MARGINS,
) -> QuantKld:
    """One quant's statistics over the corpus, on each text and by position, and its equivalence
    over the chunks (each chunk's mean KL a unit); `chunking` is (first scored position, ctx)."""
    first_scored, ctx = chunking
    rows_per_chunk = ctx - 1 - first_scored
    stats, tail, extra = scores.summary(slice(None))
    by_category = tuple(
        CategoryKld(text.name, *scores.summary(text_rows(text, rows_per_chunk))) for text in texts
    )
    kl = scores.kl_lower + scores.kl_gap
    by_position = position_buckets(
        kl, scores.same_top, scores.nll, scores.nll_base, first_scored, ctx
    )
    chunk_kl = kl.reshape(-1, rows_per_chunk).mean(axis=1)
    equivalence = kl_equivalence(chunk_kl, margins, unit="chunks")
    return QuantKld(
        label, path, stats, seconds, tail, by_category, extra,
        equivalence=equivalence, chunk_kl=tuple(chunk_kl.tolist()), by_position=by_position,
    )


def extra_metrics(scores: TokenScores, stats: KldStats) -> dict[str, float]:
    """The registered corpus metrics with a kernel whose name is not already a key of the
    statistics or the tail check, from the per-token scores."""
    typed = {*stats.to_dict(), *TailCheck.__dataclass_fields__}
    return metrics.extra_values(MODE, scores, typed)
