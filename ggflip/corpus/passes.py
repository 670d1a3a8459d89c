"""The two passes of a corpus run: the baseline into its compact record, then a quant against it.

Each chunk is decoded alone in a context of exactly `ctx` tokens; logits come back only at the
scored positions (the second half of the chunk), a slice at a time (`Backend.logits_slices`:
llama.cpp's ubatches, at most n_ubatch rows), and are reduced in blocks of `block_rows` rows.
So memory is two slices' logits whatever the corpus length and whatever `ctx`: slice i is scored
on the scoring threads while slice i + 1 decodes (`ggflip.runs.pipeline`), never ctx × n_vocab
(llama-perplexity's `--kl-divergence-base` holds that, 8.6 GB at ctx 8192 and 262,144 tokens).
A block's tail draws are seeded by the chunk's place in its text and the block's first row (on
a grid of `block_rows` from the chunk's first scored row, cut at a slice's edge), so they do not
depend on which thread scores it, or when.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory, ScoreRequest
from ggflip.config.models_toml import ModelSpec
from ggflip.corpus.cache import BaselineWriter, CorpusBaseline
from ggflip.corpus.events import ChunkScored, CorpusReady, KldEvent, QuantKld, TextInfo
from ggflip.corpus.spec import SAMPLING_SEED, KldSpec, text_infos
from ggflip.corpus.stats import FloatArray, TokenScores
from ggflip.corpus.summary import QuantScores, quant_summary
from ggflip.corpus.texts import chunk_tokens
from ggflip.runs.events import BASELINE, QUANT
from ggflip.runs.loading import open_model
from ggflip.runs.pipeline import RowMap, overlapped
from ggflip.scoring.acceptance import acceptance_rows
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import BaselineRows, baseline_normalize, kl_rows, normalize


def sized(model: ModelSpec, ctx: int) -> ModelSpec:
    """The model's spec with a context of exactly one chunk in one sequence (other settings from
    models.toml)."""
    return model.with_context(ctx, 1)


Slice = tuple[int, int]
"""A pass's unit of work: (chunk index, the chunk's row its logits start at)."""


class _Slices:
    """A pass's work: each chunk's slices in order, each read by `decode` from the backend's
    `logits_slices` of that chunk (in the decoding thread, one at a time, as the pipeline asks)."""

    def __init__(
        self, backend: Backend, spec: KldSpec, tokens: Callable[[int], NDArray[np.int32]], n: int
    ) -> None:
        self._backend, self._spec, self._tokens, self._n = backend, spec, tokens, n
        self._reader: Iterator[NDArray[np.float32]] | None = None
        self._row = 0

    def __iter__(self) -> Iterator[Slice]:
        positions = tuple(range(self._spec.first_scored, self._spec.ctx - 1))
        for index in range(self._n):
            request = ScoreRequest(tuple(int(t) for t in self._tokens(index)), positions)
            self._reader, self._row = self._backend.logits_slices(request), 0
            while self._row < len(positions):
                yield index, self._row
            getattr(self._reader, "close", lambda: None)()  # a generator's decodes end here

    def decode(self, item: Slice) -> NDArray[np.float32]:
        """The next slice's logits rows (`item` is the slice `__iter__` just gave)."""
        assert self._reader is not None
        logits = next(self._reader)
        self._row += logits.shape[0]
        return logits


def _blocks(start: int, n: int, size: int) -> Iterator[slice]:
    """The rows [start, start + n) of a chunk in blocks on a grid of `size` from row 0."""
    row, stop = start, start + n
    while row < stop:
        end = min(stop, (row // size + 1) * size)
        yield slice(row, end)
        row = end


def _pieces(backend: Backend, chunk: NDArray[np.int32]) -> tuple[str, ...]:
    return tuple(backend.token_pieces([int(t) for t in chunk]))


def _chunk_texts(
    spec: KldSpec, backend: Backend
) -> tuple[NDArray[np.int32], NDArray[np.int64], tuple[TextInfo, ...]]:
    """Every text tokenized and chunked on its own: (chunks of all texts in order, each chunk's
    index within its text, the texts' places), before anything is scored.

    Raises:
        DataError: a text shorter than one chunk (named).
    """
    bos = backend.tokenize("", add_bos=True, special=False)
    chunked, counts = [], []
    for text in spec.texts:
        tokens = backend.tokenize(text.text, add_bos=True, special=False)
        chunked.append(chunk_tokens(tokens, bos, spec.ctx, spec.chunks, text.source))
        counts.append((len(tokens), chunked[-1].shape[0]))
    local = np.concatenate([np.arange(n_chunks) for _, n_chunks in counts])
    return np.concatenate(chunked), local, text_infos(spec, counts)


def score_baseline(
    spec: KldSpec, factory: BackendFactory, key: str, key_parts: dict[str, object], top_k: int
) -> Generator[KldEvent, None, tuple[CorpusBaseline, tuple[TextInfo, ...]]]:
    """Tokenize, chunk and score the baseline into a new compact entry; returns (baseline,
    texts)."""
    model = spec.model_set.baseline
    backend = yield from open_model(factory, sized(model, spec.ctx), BASELINE)
    writer: BaselineWriter | None = None
    try:
        chunks, local_index, texts = _chunk_texts(spec, backend)
        n_chunks, n_rows = chunks.shape[0], spec.rows_per_chunk
        n_text_tokens = sum(text.n_text_tokens for text in texts)
        yield CorpusReady(n_text_tokens, n_chunks, spec.first_scored, n_rows, False, texts)
        writer = BaselineWriter(
            spec.cache_dir, key, n_chunks, spec.ctx, n_rows, top_k, spec.tail_samples
        )

        slices = _Slices(backend, spec, lambda index: chunks[index], n_chunks)
        workers = factory.scoring_workers(spec.scoring_threads, model)
        score = _baseline_scorer(spec, chunks, local_index, top_k)
        parts: list[tuple[PositionRecord, FloatArray]] = []
        for (index, row), part in overlapped(slices, slices.decode, score, workers):
            parts.append(part)
            if row + part[1].shape[0] < n_rows:
                continue
            rows = PositionRecord.concatenate([record for record, _ in parts])
            target = np.concatenate([logprobs for _, logprobs in parts])
            parts = []
            chunk = chunks[index]
            writer.write_chunk(index, chunk, rows, target)
            pieces = _pieces(backend, chunk)
            yield ChunkScored(
                model.label, BASELINE, index, n_chunks, spec.first_scored, pieces, -target
            )
        baseline = writer.finish(baseline_meta(spec, key_parts, texts, n_text_tokens))
        writer = None
    finally:
        backend.close()
        if writer is not None:
            writer.discard()
    return baseline, texts


def _baseline_scorer(
    spec: KldSpec, chunks: NDArray[np.int32], local_index: NDArray[np.int64], top_k: int
) -> Callable[[Slice, NDArray[np.float32], RowMap], tuple[PositionRecord, FloatArray]]:
    """The numpy part of a baseline slice: its rows' record and the log-probability of each
    scored position's next token."""

    def score(
        item: Slice, logits: NDArray[np.float32], row_map: RowMap
    ) -> tuple[PositionRecord, FloatArray]:
        index, first = item
        targets = chunks[index][spec.first_scored + 1 :]

        def block_record(block: slice) -> tuple[BaselineRows, FloatArray]:
            # Seeded by the chunk's place in its own text, so a text's tail draws (and KL)
            # are those of a run on that text alone.
            seed = [int(local_index[index]), SAMPLING_SEED, block.start]
            norm, part = baseline_normalize(
                logits[block.start - first : block.stop - first],
                top_k,
                spec.tail_samples,
                np.random.default_rng(seed),
            )
            return part, norm.logprobs_at(targets[block])

        blocks = list(_blocks(first, logits.shape[0], spec.block_rows))
        done = row_map(block_record, blocks)
        rows = PositionRecord.concatenate([part for part, _ in done])
        return rows, np.concatenate([target for _, target in done])

    return score


def baseline_meta(
    spec: KldSpec, key_parts: dict[str, object], texts: tuple[TextInfo, ...], n_text_tokens: int
) -> dict[str, object]:
    """What the cache entry's meta file says about the run that scored it."""
    return {
        "key": key_parts,
        "set": spec.model_set.name,
        "baseline": str(spec.model_set.baseline.path),
        "source": spec.source,
        "n_text_tokens": n_text_tokens,
        "texts": [
            {
                "name": text.name,
                "source": text.source,
                "sha256": text.text_sha256,
                "n_text_tokens": text.n_text_tokens,
                "n_chunks": text.n_chunks,
            }
            for text in texts
        ],
    }


def score_quant(
    spec: KldSpec,
    factory: BackendFactory,
    model: ModelSpec,
    baseline: CorpusBaseline,
    texts: tuple[TextInfo, ...],
) -> Generator[KldEvent, None, QuantKld]:
    """Score one quant chunk by chunk against the baseline's rows; returns its QuantKld, over the
    corpus and per text."""
    backend = yield from open_model(factory, sized(model, spec.ctx), QUANT)
    n_chunks = baseline.tokens.shape[0]
    n_rows = n_chunks * spec.rows_per_chunk
    nll, nll_base, kl_lower, kl_gap, acceptance = (np.empty(n_rows) for _ in range(5))
    same_top = np.empty(n_rows, dtype=bool)
    scores = QuantScores(nll, nll_base, kl_lower, kl_gap, same_top, acceptance)
    try:
        scoring_started = time.perf_counter()

        slices = _Slices(
            backend, spec, lambda index: np.asarray(baseline.tokens[index]), n_chunks
        )
        workers = factory.scoring_workers(spec.scoring_threads, model)
        score = _quant_scorer(spec, baseline, scores)
        for (index, row), n_slice in overlapped(slices, slices.decode, score, workers):
            if row + n_slice < spec.rows_per_chunk:
                continue
            chunk = np.asarray(baseline.tokens[index])
            span = baseline.rows(index)
            scores.nll_base[span] = -np.asarray(baseline.target_logprob[span])
            yield _quant_chunk(model, spec, index, n_chunks, _pieces(backend, chunk), scores, span)
    finally:
        backend.close()
    return quant_summary(
        model.label,
        str(model.path),
        scores,
        texts,
        (spec.first_scored, spec.ctx),
        time.perf_counter() - scoring_started,
        spec.margins,
    )


def _quant_scorer(
    spec: KldSpec, baseline: CorpusBaseline, scores: QuantScores
) -> Callable[[Slice, NDArray[np.float32], RowMap], int]:
    """The numpy part of a quant slice: its rows' NLL, KL (lower bound and gap), acceptance and
    same-top, written into `scores`; returns the slice's row count."""

    def score(item: Slice, logits_rows: NDArray[np.float32], row_map: RowMap) -> int:
        index, first = item
        span = baseline.rows(index)
        base = baseline.positions[span]
        targets = np.asarray(baseline.tokens[index])[spec.first_scored + 1 :]

        def block_scores(block: slice) -> None:
            rows = slice(span.start + block.start, span.start + block.stop)
            part = base[block]
            norm = normalize(logits_rows[block.start - first : block.stop - first], part.top_ids)
            scores.kl_lower[rows], scores.kl_gap[rows] = kl_rows(part, norm)
            scores.acceptance[rows] = acceptance_rows(part, norm)
            scores.nll[rows] = -norm.logprobs_at(targets[block])
            scores.same_top[rows] = norm.argmax() == part.top_ids[:, 0]

        row_map(block_scores, list(_blocks(first, logits_rows.shape[0], spec.block_rows)))
        return int(logits_rows.shape[0])

    return score


def _quant_chunk(
    model: ModelSpec,
    spec: KldSpec,
    index: int,
    n_chunks: int,
    pieces: tuple[str, ...],
    scores: QuantScores,
    span: slice,
) -> ChunkScored:
    """A quant's scored chunk as an event, with copies of its rows' numbers."""
    rows = TokenScores(
        scores.nll[span],
        scores.nll_base[span],
        scores.kl_lower[span] + scores.kl_gap[span],
        scores.same_top[span],
    )
    return ChunkScored(
        model.label,
        QUANT,
        index,
        n_chunks,
        spec.first_scored,
        pieces,
        rows.nll.copy(),
        rows.kl.copy(),
        rows.p_diff,
        rows.same_top.copy(),
        rows.nll_base.copy(),
    )
