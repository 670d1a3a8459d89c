"""Corpus mode: score every token of one or more texts with the baseline and each quant, like
llama-perplexity.

Tokenization and chunking follow tools/perplexity/perplexity.cpp, for each text on its own
(`ggflip.corpus.texts`): the text (one trailing newline dropped, as `-f` does) is tokenized
once with BOS, cut into non-overlapping chunks of `ctx` tokens, each chunk's first token
replaced by BOS, and only the second half of each chunk is scored: positions ctx/2 .. ctx-2
predict tokens ctx/2+1 .. ctx-1, so every scored token has at least ctx/2 tokens of context.
The texts' chunks are scored one after the other, and each text's statistics (its category)
come out beside the whole corpus's. Differences from llama-perplexity, on purpose: a text of a
single chunk is accepted (llama.cpp wants two), and the baseline is kept as its top K plus a
tail mass (`ggflip.corpus.cache`) instead of 16-bit full-vocabulary rows.

`run_kld` is a generator of `ggflip.corpus.events` (plus the generic ModelLoading/ModelLoaded/
BaselineFromCache of `ggflip.runs.events`). Memory is one chunk's logits (ctx/2 x n_vocab float32)
plus `block_rows` x n_vocab float64 work rows; baseline rows live in a memory-mapped file.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Generator
from dataclasses import replace

import numpy as np

from ggflip.backends.base import BackendFactory, ModelProbe
from ggflip.config.labels import settings_diff
from ggflip.config.models_toml import ModelSpec
from ggflip.corpus.cache import (
    CorpusBaseline,
    bytes_per_token,
    llama_cpp_bytes_per_token,
    load_baseline,
)
from ggflip.corpus.events import (
    BaselineKld,
    BaselineKldFinished,
    CacheInfo,
    CorpusReady,
    KldEvent,
    KldFinished,
    KldReport,
    KldStarted,
    QuantKld,
    QuantKldFinished,
    TextInfo,
)
from ggflip.corpus.passes import score_baseline, score_quant, sized
from ggflip.corpus.spec import CHUNKING_VERSION, KldSpec, text_infos
from ggflip.corpus.summary import baseline_summary
from ggflip.errors import UsageError
from ggflip.runs.events import BaselineFromCache
from ggflip.runs.vocab import check_vocabularies
from ggflip.store.keys import cache_key


def run_kld(spec: KldSpec, factory: BackendFactory) -> Generator[KldEvent, None, None]:
    """Score the baseline (or read it from the cache), then each quant, over the corpus, yielding
    events.

    Raises:
        ModelFileError, VocabMismatchError, DataError, BackendError, CacheError, DiskFullError.
    """
    model_set = spec.model_set
    probes = [factory.probe(sized(model, spec.ctx)) for model in model_set.models]
    check_vocabularies(model_set, probes)
    _check_trained_context(spec, probes)
    n_vocab = probes[0].n_vocab
    top_k = min(spec.top_k, n_vocab)
    yield KldStarted(
        model_set.name, tuple(m.label for m in model_set.models), spec.source, spec.ctx
    )
    key_parts = corpus_key_parts(spec, probes[0], factory, top_k)
    key = cache_key(key_parts)
    cached = (
        load_baseline(spec.cache_dir, key, None, spec.ctx, top_k, spec.tail_samples)
        if spec.cache_dir
        else None
    )
    texts = _cached_texts(spec, cached) if cached is not None else None
    if texts is None:
        cached = None
    quants: list[QuantKld] = []
    baseline: CorpusBaseline | None = cached
    try:
        if baseline is not None and texts is not None:
            yield BaselineFromCache(model_set.baseline.label, str(baseline.folder))
            seconds = 0.0
            yield _ready_from_cache(spec, baseline, texts)
        else:
            started = time.perf_counter()
            baseline, texts = yield from score_baseline(spec, factory, key, key_parts, top_k)
            seconds = time.perf_counter() - started
        baseline_info = baseline_summary(
            model_set.baseline.label,
            str(model_set.baseline.path),
            -np.asarray(baseline.target_logprob, dtype=np.float64),
            texts,
            spec.rows_per_chunk,
            seconds,
            cached is not None,
            {name: key_parts[name] for name in ("llama", "build", "tail_samples")},
        )
        baseline_info = dataclasses.replace(baseline_info, **probes[0].memory_facts())
        yield BaselineKldFinished(baseline_info)
        for quant, probe in zip(model_set.quants, probes[1:]):
            summary = yield from _score_quant(spec, factory, quant, probe, baseline, texts)
            summary = dataclasses.replace(summary, **probe.memory_facts())
            quants.append(summary)
        yield KldFinished(
            _report(spec, baseline, texts, top_k, n_vocab, baseline_info, quants, True)
        )
    finally:
        if baseline is not None and spec.cache_dir is None:
            shutil.rmtree(baseline.folder, ignore_errors=True)


def _score_quant(
    spec: KldSpec,
    factory: BackendFactory,
    quant: ModelSpec,
    probe: ModelProbe,
    baseline: CorpusBaseline,
    texts: tuple[TextInfo, ...],
) -> Generator[KldEvent, None, QuantKld]:
    """One quant scored against the baseline, with what its report says about how it was made
    and run (its settings unlike the baseline's, its imatrix provenance)."""
    summary = yield from score_quant(spec, factory, quant, baseline, texts)
    diff = settings_diff(spec.model_set.baseline.llama, quant.llama)
    summary = replace(summary, settings=diff, imatrix=dict(probe.imatrix))
    yield QuantKldFinished(summary)
    return summary


def _check_trained_context(spec: KldSpec, probes: list[ModelProbe]) -> None:
    """Refuse a `--ctx` beyond a model's trained context: its logits there mean nothing.

    Raises:
        UsageError: naming the model and its trained context.
    """
    for model, probe in zip(spec.model_set.models, probes):
        if probe.context_length is not None and spec.ctx > probe.context_length:
            raise UsageError(
                f"--ctx {spec.ctx} is beyond {model.label}'s trained context of "
                f"{probe.context_length:,} tokens ({model.path.name}); give --ctx "
                f"{probe.context_length} or less"
            )


def corpus_key_parts(
    spec: KldSpec, probe: ModelProbe, factory: BackendFactory, top_k: int
) -> dict[str, object]:
    """What the baseline's compact record depends on: its cache key's parts."""
    return {
        "mode": "kld",
        "model": probe.identity,
        "vocab": probe.vocab_fingerprint,
        "texts": [text.sha256 for text in spec.texts],
        "ctx": spec.ctx,
        "chunks": spec.chunks,
        "top_k": top_k,
        "tail_samples": spec.tail_samples,
        "block_rows": spec.block_rows,
        "chunking": CHUNKING_VERSION,
        # Only when it is not llama-perplexity's ctx/2, so keys made before it still match.
        **({} if spec.first_scored == spec.ctx // 2 else {"score_from": spec.first_scored}),
        **factory.baseline_numerics(sized(spec.model_set.baseline, spec.ctx)),
    }


def _ready_from_cache(
    spec: KldSpec, baseline: CorpusBaseline, texts: tuple[TextInfo, ...]
) -> CorpusReady:
    """The corpus's chunks and texts as the cached baseline entry holds them."""
    return CorpusReady(
        sum(text.n_text_tokens for text in texts),
        baseline.tokens.shape[0],
        spec.first_scored,
        spec.rows_per_chunk,
        True,
        texts,
    )


def _cached_texts(spec: KldSpec, baseline: CorpusBaseline) -> tuple[TextInfo, ...] | None:
    """The texts' chunk counts as the cached entry records them; None when it holds no usable
    record (the entry is then scored again)."""
    stored = baseline.meta.get("texts")
    if not isinstance(stored, list) or len(stored) != len(spec.texts):
        return None
    try:
        counts = [(int(text["n_text_tokens"]), int(text["n_chunks"])) for text in stored]
    except (KeyError, TypeError, ValueError):
        return None
    if sum(n for _, n in counts) != baseline.tokens.shape[0]:
        return None
    return text_infos(spec, counts)


def partial_kld_report(
    spec: KldSpec,
    baseline: BaselineKld | None,
    quants: list[QuantKld],
    n_chunks: int = 0,
    baseline_chunks: int = 0,
    texts: tuple[TextInfo, ...] = (),
) -> KldReport:
    """A report of what finished before a run stopped early (no cache details).

    Args:
        n_chunks: the corpus's chunks (`CorpusReady.n_chunks`; 0 when not known yet).
        baseline_chunks: chunks the baseline had scored (all of them once it finished or came
            from the cache): `tokens_scored` counts their tokens.
        texts: the texts' chunks (`CorpusReady.texts`; empty when not known yet).
    """
    return KldReport(
        set=spec.model_set.name,
        source=spec.source,
        text_sha256=spec.text_sha256,
        ctx=spec.ctx,
        n_chunks=n_chunks or sum(text.n_chunks for text in texts),
        n_text_tokens=-1,
        tokens_scored=baseline_chunks * spec.rows_per_chunk,
        cache=None,
        baseline=baseline,
        quants=tuple(quants),
        complete=False,
        texts=texts,
        calibration=spec.calibration,
    )


def _report(
    spec: KldSpec,
    baseline: CorpusBaseline,
    texts: tuple[TextInfo, ...],
    top_k: int,
    n_vocab: int,
    baseline_info: BaselineKld,
    quants: list[QuantKld],
    complete: bool,
) -> KldReport:
    tail_mass = np.exp(np.asarray(baseline.positions.tail_logmass, dtype=np.float64))
    ours, theirs = bytes_per_token(top_k, spec.tail_samples), llama_cpp_bytes_per_token(n_vocab)
    cache = CacheInfo(
        top_k=top_k,
        tail_samples=spec.tail_samples,
        bytes_per_token=ours,
        llama_cpp_bytes_per_token=theirs,
        size_ratio=theirs / ours,
        file_bytes=baseline.nbytes(),
        path=str(baseline.folder) if spec.cache_dir else None,
        tail_mass_mean=float(tail_mass.mean()),
        tail_mass_p99=float(np.quantile(tail_mass, 0.99)),
        tail_mass_max=float(tail_mass.max()),
    )
    return KldReport(
        set=spec.model_set.name,
        source=spec.source,
        text_sha256=spec.text_sha256,
        ctx=spec.ctx,
        n_chunks=int(baseline.tokens.shape[0]),
        n_text_tokens=sum(text.n_text_tokens for text in texts),
        tokens_scored=int(tail_mass.size),
        cache=cache,
        baseline=baseline_info,
        quants=tuple(quants),
        complete=complete,
        texts=texts,
        calibration=spec.calibration,
    )
