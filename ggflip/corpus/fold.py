"""Corpus mode's part of the one fold (`ggflip.runs.fold`): chunks, texts, running statistics.

`CorpusFold` keeps every scored chunk (`ChunkScored`, one per chunk and model) as a model's
rows, and computes llama-perplexity's statistics over the chunks scored so far with
`corpus.stats.kld_stats`, over the corpus and per text; once a quant finishes, the engine's own
summary. `current_report()` is the final report or `partial_kld_report` over what finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ggflip.corpus.engine import partial_kld_report
from ggflip.corpus.events import (
    BaselineKld,
    BaselineKldFinished,
    ChunkScored,
    CorpusReady,
    KldFinished,
    KldReport,
    QuantKld,
    QuantKldFinished,
    TextInfo,
)
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.stats import KldStats, TokenScores, kld_stats, mean_and_uncertainty
from ggflip.runs.fold import CACHED, EventKinds, Fold, Note


def holds(text: TextInfo, chunk: int) -> bool:
    """Whether chunk `chunk` of the run was cut from `text`."""
    return text.first_chunk <= chunk < text.first_chunk + text.n_chunks


class CorpusFold(Fold[ChunkScored, BaselineKld, QuantKld, KldReport]):
    """Progress, running statistics and partial report of a corpus run."""

    EVENTS = EventKinds(
        baseline_finished=BaselineKldFinished,
        quant_finished=QuantKldFinished,
        finished=KldFinished,
    )

    UNIT = "chunks"

    def __init__(self, spec: KldSpec, clock: Callable[[], float]) -> None:
        super().__init__([(m.label, str(m.path)) for m in spec.model_set.models], 0, clock)
        self.spec = spec
        self.n_chunks = 0
        self.first_scored = 0
        self.texts: tuple[TextInfo, ...] = ()
        self.pieces: dict[int, tuple[str, ...]] = {}
        self.chunks: dict[str, dict[int, ChunkScored]] = {label: {} for label in self.models}

    def _fold_mode(self, event: object) -> None:
        if isinstance(event, ChunkScored):
            self._chunk_scored(event)
        elif isinstance(event, CorpusReady):
            self._corpus_ready(event)
        elif isinstance(event, QuantKldFinished):
            self.models[event.summary.label].done = self.n_chunks

    def _corpus_ready(self, event: CorpusReady) -> None:
        self.n_chunks, self.first_scored = event.n_chunks, event.first_scored
        self.texts = event.texts
        for model in self.models.values():
            model.total = event.n_chunks
            if model.status == CACHED:
                model.done = model.total
        for text in event.texts:
            if self.spec.chunks and text.n_chunks < self.spec.chunks:
                self.notes.append(
                    Note(
                        f"{text.source} holds only {text.n_chunks} chunks of {self.spec.ctx} "
                        "tokens",
                        warning=True,
                    )
                )

    def _chunk_scored(self, event: ChunkScored) -> None:
        model = self.models[event.label]
        model.status, model.done, model.total = self.WORKING, event.chunk + 1, event.n_chunks
        model.rows.append(event)
        self.current = event.label
        self.pieces.setdefault(event.chunk, event.pieces)
        self.chunks[event.label][event.chunk] = event

    def _partial_report(self) -> KldReport:
        base = self.models[self.baseline_label]
        baseline_chunks = self.n_chunks if base.status == CACHED else base.done
        return partial_kld_report(
            self.spec, self.baseline, self.quants, self.n_chunks, baseline_chunks, self.texts
        )

    def stats(self, label: str, text: TextInfo | None = None) -> KldStats | None:
        """The engine's summary once finished, else kld_stats over the chunks scored so far; over
        the corpus, or over one text's chunks."""
        final = self.models[label].summary
        if final is not None:
            if text is None:
                return final.stats
            return next(c.stats for c in final.by_category if c.name == text.name)
        scored = self.chunks[label]
        order = sorted(c for c, e in scored.items() if e.kl is not None and _in(text, c))
        if not order:
            return None
        events = [scored[c] for c in order]
        return kld_stats(
            TokenScores(
                np.concatenate([e.nll for e in events]),
                np.concatenate([e.nll_base for e in events if e.nll_base is not None]),
                np.concatenate([e.kl for e in events if e.kl is not None]),
                np.concatenate([e.same_top for e in events if e.same_top is not None]),
            )
        )

    def running_ppl(self, label: str, text: TextInfo | None = None) -> tuple[float, float] | None:
        """A model's perplexity and its uncertainty over its chunks scored so far (of one text)."""
        scored = self.chunks[label]
        order = sorted(c for c in scored if _in(text, c))
        if not order:
            return None
        mean, unc = mean_and_uncertainty(np.concatenate([scored[c].nll for c in order]))
        return math.exp(mean), math.exp(mean) * unc

    def text_of(self, chunk: int) -> TextInfo | None:
        """The text (category) a chunk was cut from."""
        return next((text for text in self.texts if holds(text, chunk)), None)


def _in(text: TextInfo | None, chunk: int) -> bool:
    return text is None or holds(text, chunk)
