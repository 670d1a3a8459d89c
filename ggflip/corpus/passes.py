"""The two passes of a corpus run: the baseline into its compact record, then a quant against it.

Each chunk is decoded alone in a context of exactly `ctx` tokens; logits come back only at the
scored positions (the second half of the chunk) and are reduced in blocks of `block_rows` rows,
so memory is two chunks' scored logits whatever the corpus length: chunk i is scored on the
scoring threads while chunk i + 1 decodes (`ggflip.runs.pipeline`). A block's tail draws are
seeded by the chunk's place in its text and the block's first row, so they do not depend on which
thread scores it, or when.
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


def _scored_logits(
    backend: Backend, spec: KldSpec, chunk: NDArray[np.int32]
) -> NDArray[np.float32]:
    positions = tuple(range(spec.first_scored, spec.ctx - 1))
    return backend.logits([ScoreRequest(tuple(int(t) for t in chunk), positions)])[0]


def _blocks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


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

        def decode(index: int) -> NDArray[np.float32]:
            return _scored_logits(backend, spec, chunks[index])

        workers = factory.scoring_workers(spec.scoring_threads, model)
        score = _baseline_scorer(spec, chunks, local_index, top_k)
        for index, (rows, target) in overlapped(range(n_chunks), decode, score, workers):
            chunk = chunks[index]
            writer.write_chunk(index, chunk, rows, target)
            pieces = _pieces(backend, chunk)
            yield ChunkScored(
                model.label, BASELINE, index, n_chunks, spec.first_scored, pieces, -target
            )
        baseline = writer.finish(_baseline_meta(spec, key_parts, texts, n_text_tokens))
        writer = None
    finally:
        backend.close()
        if writer is not None:
            writer.discard()
    return baseline, texts


def _baseline_scorer(
    spec: KldSpec, chunks: NDArray[np.int32], local_index: NDArray[np.int64], top_k: int
) -> Callable[[int, NDArray[np.float32], RowMap], tuple[PositionRecord, FloatArray]]:
    """The numpy part of a baseline chunk: its rows' record and the log-probability of each
    scored position's next token."""

    def score(
        index: int, logits: NDArray[np.float32], row_map: RowMap
    ) -> tuple[PositionRecord, FloatArray]:
        targets = chunks[index][spec.first_scored + 1 :]

        def block_record(block: slice) -> tuple[BaselineRows, FloatArray]:
            # Seeded by the chunk's place in its own text, so a text's tail draws (and KL)
            # are those of a run on that text alone.
            seed = [int(local_index[index]), SAMPLING_SEED, block.start]
            norm, part = baseline_normalize(
                logits[block], top_k, spec.tail_samples, np.random.default_rng(seed)
            )
            return part, norm.logprobs_at(targets[block])

        done = row_map(block_record, list(_blocks(spec.rows_per_chunk, spec.block_rows)))
        rows = PositionRecord.concatenate([part for part, _ in done])
        return rows, np.concatenate([target for _, target in done])

    return score


def _baseline_meta(
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

        def decode(index: int) -> NDArray[np.float32]:
            return _scored_logits(backend, spec, np.asarray(baseline.tokens[index]))

        workers = factory.scoring_workers(spec.scoring_threads, model)
        score = _quant_scorer(spec, baseline, scores)
        for index, _ in overlapped(range(n_chunks), decode, score, workers):
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
        spec.rows_per_chunk,
        time.perf_counter() - scoring_started,
        spec.margins,
    )


def _quant_scorer(
    spec: KldSpec, baseline: CorpusBaseline, scores: QuantScores
) -> Callable[[int, NDArray[np.float32], RowMap], None]:
    """The numpy part of a quant chunk: its rows' NLL, KL (lower bound and gap), acceptance and
    same-top, written into `scores`."""

    def score(index: int, logits: NDArray[np.float32], row_map: RowMap) -> None:
        span = baseline.rows(index)
        base = baseline.positions[span]
        targets = np.asarray(baseline.tokens[index])[spec.first_scored + 1 :]

        def block_scores(block: slice) -> None:
            rows = slice(span.start + block.start, span.start + block.stop)
            part = base[block]
            norm = normalize(logits[block], part.top_ids)
            scores.kl_lower[rows], scores.kl_gap[rows] = kl_rows(part, norm)
            scores.acceptance[rows] = acceptance_rows(part, norm)
            scores.nll[rows] = -norm.logprobs_at(targets[block])
            scores.same_top[rows] = norm.argmax() == part.top_ids[:, 0]

        row_map(block_scores, list(_blocks(spec.rows_per_chunk, spec.block_rows)))

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
