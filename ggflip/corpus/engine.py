"""Corpus mode: score every token of a text with the baseline and each quant, like llama-perplexity.

Tokenization and chunking follow tools/perplexity/perplexity.cpp: the text (one trailing
newline dropped, as `-f` does) is tokenized once with BOS, cut into non-overlapping chunks of
`ctx` tokens, each chunk's first token replaced by BOS, and only the second half of each chunk
is scored: positions ctx/2 .. ctx-2 predict tokens ctx/2+1 .. ctx-1, so every scored token has
at least ctx/2 tokens of context. Differences from llama-perplexity, on purpose: a text of a
single chunk is accepted (llama.cpp wants two), and the baseline is kept as its top K plus a
tail mass (`ggflip.corpus.cache`) instead of 16-bit full-vocabulary rows.

`run_kld` is a generator of `ggflip.corpus.events` (plus the generic ModelLoading/ModelLoaded/
BaselineFromCache of `ggflip.choice.events`). Memory is one chunk's logits (ctx/2 x n_vocab float32)
plus `block_rows` x n_vocab float64 work rows; baseline rows live in a memory-mapped file.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory, ScoreRequest
from ggflip.backends.numerics import baseline_numerics
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.corpus.cache import (
    BaselineWriter,
    CorpusBaseline,
    bytes_per_token,
    llama_cpp_bytes_per_token,
    load_baseline,
)
from ggflip.corpus.events import (
    BaselineKld,
    BaselineKldFinished,
    CacheInfo,
    ChunkScored,
    CorpusReady,
    KldEvent,
    KldFinished,
    KldReport,
    KldStarted,
    QuantKld,
    QuantKldFinished,
    TailCheck,
)
from ggflip.corpus.stats import TokenScores, kld_stats, mean_and_uncertainty
from ggflip.errors import DataError, UsageError
from ggflip.runs.events import BASELINE, QUANT, BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.runs.vocab import check_vocabularies
from ggflip.scoring.acceptance import acceptance_from_top_k
from ggflip.scoring.topk import (
    DEFAULT_TAIL_SAMPLES,
    BaselineRows,
    baseline_rows,
    kl_rows,
    normalize,
)
from ggflip.store.keys import cache_key

DEFAULT_CTX = 512
DEFAULT_CORPUS_TOP_K = 512
SAMPLING_SEED = 20250705
CHUNKING_VERSION = "llama-perplexity-1"


@dataclass(frozen=True)
class KldSpec:
    """Everything that defines a corpus run; both front ends build one and call `run_kld`."""

    model_set: ModelSet
    text: str
    source: str
    ctx: int = DEFAULT_CTX
    chunks: int | None = None
    cache_dir: Path | None = None
    top_k: int = DEFAULT_CORPUS_TOP_K
    tail_samples: int = DEFAULT_TAIL_SAMPLES
    block_rows: int = 32

    def __post_init__(self) -> None:
        if self.ctx < 8:
            raise UsageError(f"--ctx must be at least 8, got {self.ctx}")
        if self.chunks is not None and self.chunks <= 0:
            raise UsageError(f"--chunks must be positive, got {self.chunks}")
        if self.top_k <= 0:
            raise UsageError(f"--top-k must be positive, got {self.top_k}")
        if self.tail_samples < 0:
            raise UsageError(f"--tail-samples must be 0 or more, got {self.tail_samples}")

    @property
    def first_scored(self) -> int:
        """Position of the first scored logits row (llama.cpp's `first = n_ctx/2`)."""
        return self.ctx // 2

    @property
    def rows_per_chunk(self) -> int:
        """Scored tokens per chunk: ctx - 1 - ctx/2."""
        return self.ctx - 1 - self.first_scored

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def read_corpus(path: Path) -> str:
    """The text of a corpus file, with one trailing newline dropped as llama-perplexity's `-f` does.

    Raises:
        DataError: missing, unreadable or not UTF-8.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: text file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read text file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from None
    return text.removesuffix("\n")


def chunk_tokens(
    tokens: list[int], bos: list[int], ctx: int, chunks: int | None, source: str
) -> NDArray[np.int32]:
    """Cut tokens into (n_chunks, ctx) non-overlapping chunks, each starting with BOS when the model
    uses one.

    Raises:
        DataError: the text is shorter than one chunk.
    """
    available = len(tokens) // ctx
    if available < 1:
        raise DataError(
            f"{source}: {len(tokens)} tokens, fewer than one chunk of --ctx {ctx}; use a longer "
            "text or a smaller --ctx"
        )
    n_chunks = min(chunks, available) if chunks else available
    out = np.asarray(tokens[: n_chunks * ctx], dtype=np.int32).reshape(n_chunks, ctx).copy()
    if bos:
        out[:, 0] = bos[0]
    return out


def _sized(model: ModelSpec, ctx: int) -> ModelSpec:
    """The model's spec with a llama context of exactly one chunk (other settings from
    models.toml)."""
    settings = replace(model.llama, n_ctx=ctx, n_seq_max=1)
    return replace(model, llama=settings)


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


def run_kld(spec: KldSpec, factory: BackendFactory) -> Generator[KldEvent, None, None]:
    """Score the baseline (or read it from the cache), then each quant, over the corpus, yielding
    events.

    Raises:
        ModelFileError, VocabMismatchError, DataError, BackendError, CacheError, DiskFullError.
    """
    model_set = spec.model_set
    probes = [factory.probe(model) for model in model_set.models]
    check_vocabularies(model_set, probes)
    n_vocab = probes[0].n_vocab
    top_k = min(spec.top_k, n_vocab)
    yield KldStarted(
        model_set.name, tuple(m.label for m in model_set.models), spec.source, spec.ctx
    )
    key_parts = {
        "mode": "kld",
        "model": probes[0].identity,
        "vocab": probes[0].vocab_fingerprint,
        "text": spec.text_sha256,
        "ctx": spec.ctx,
        "chunks": spec.chunks,
        "top_k": top_k,
        "tail_samples": spec.tail_samples,
        "chunking": CHUNKING_VERSION,
        **baseline_numerics(_sized(model_set.baseline, spec.ctx).llama, factory.build_info()),
    }
    key = cache_key(key_parts)
    cached = (
        load_baseline(spec.cache_dir, key, None, spec.ctx, top_k, spec.tail_samples)
        if spec.cache_dir
        else None
    )
    baseline_info: BaselineKld | None = None
    quants: list[QuantKld] = []
    baseline: CorpusBaseline | None = cached
    n_text_tokens = -1
    try:
        if baseline is not None:
            yield BaselineFromCache(model_set.baseline.label, str(baseline.folder))
            seconds = 0.0
        else:
            started = time.perf_counter()
            baseline, n_text_tokens = yield from _score_baseline(
                spec, factory, key, key_parts, top_k
            )
            seconds = time.perf_counter() - started
        assert baseline is not None
        if cached is not None:
            n_text_tokens = int(baseline.meta.get("n_text_tokens", -1))
            yield CorpusReady(
                n_text_tokens,
                baseline.tokens.shape[0],
                spec.first_scored,
                spec.rows_per_chunk,
                True,
            )
        nll_base = -np.asarray(baseline.target_logprob, dtype=np.float64)
        ppl, unc = mean_and_uncertainty(nll_base)
        baseline_info = BaselineKld(
            model_set.baseline.label,
            str(model_set.baseline.path),
            float(np.exp(ppl)),
            float(np.exp(ppl) * unc),
            seconds,
            cached is not None,
            {name: key_parts[name] for name in ("llama", "build", "tail_samples")},
        )
        yield BaselineKldFinished(baseline_info)
        for quant in model_set.quants:
            summary = yield from _score_quant(spec, factory, quant, baseline)
            quants.append(summary)
            yield QuantKldFinished(summary)
        yield KldFinished(
            _report(spec, baseline, n_text_tokens, top_k, n_vocab, baseline_info, quants, True)
        )
    finally:
        if baseline is not None and spec.cache_dir is None:
            shutil.rmtree(baseline.folder, ignore_errors=True)


def partial_kld_report(
    spec: KldSpec,
    baseline: BaselineKld | None,
    quants: list[QuantKld],
    n_chunks: int = 0,
    baseline_chunks: int = 0,
) -> KldReport:
    """A report of what finished before a run stopped early (no cache details).

    Args:
        n_chunks: the corpus's chunks (`CorpusReady.n_chunks`; 0 when not known yet).
        baseline_chunks: chunks the baseline had scored (all of them once it finished or came
            from the cache): `tokens_scored` counts their tokens.
    """
    return KldReport(
        set=spec.model_set.name,
        source=spec.source,
        text_sha256=spec.text_sha256,
        ctx=spec.ctx,
        n_chunks=n_chunks or spec.chunks or 0,
        n_text_tokens=-1,
        tokens_scored=baseline_chunks * spec.rows_per_chunk,
        cache=None,
        baseline=baseline,
        quants=tuple(quants),
        complete=False,
    )


def _report(
    spec: KldSpec,
    baseline: CorpusBaseline,
    n_text_tokens: int,
    top_k: int,
    n_vocab: int,
    baseline_info: BaselineKld,
    quants: list[QuantKld],
    complete: bool,
) -> KldReport:
    tail_mass = np.exp(np.asarray(baseline.tail_logmass, dtype=np.float64))
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
        n_text_tokens=n_text_tokens,
        tokens_scored=int(tail_mass.size),
        cache=cache,
        baseline=baseline_info,
        quants=tuple(quants),
        complete=complete,
    )


def _score_baseline(
    spec: KldSpec, factory: BackendFactory, key: str, key_parts: dict[str, object], top_k: int
) -> Generator[KldEvent, None, tuple[CorpusBaseline, int]]:
    """Tokenize, chunk and score the baseline into a new compact entry; returns (baseline,
    n_text_tokens)."""
    model = spec.model_set.baseline
    yield ModelLoading(model.label, BASELINE, str(model.path))
    started = time.perf_counter()
    backend = factory.open(_sized(model, spec.ctx))
    writer: BaselineWriter | None = None
    try:
        yield ModelLoaded(model.label, BASELINE, time.perf_counter() - started)
        tokens = backend.tokenize(spec.text, add_bos=True)
        chunks = chunk_tokens(
            tokens, backend.tokenize("", add_bos=True), spec.ctx, spec.chunks, spec.source
        )
        n_chunks, n_rows = chunks.shape[0], spec.rows_per_chunk
        yield CorpusReady(len(tokens), n_chunks, spec.first_scored, n_rows, False)
        writer = BaselineWriter(
            spec.cache_dir, key, n_chunks, spec.ctx, n_rows, top_k, spec.tail_samples
        )
        for index, chunk in enumerate(chunks):
            logits = _scored_logits(backend, spec, chunk)
            targets = chunk[spec.first_scored + 1 :]
            rng = np.random.default_rng([index, SAMPLING_SEED])
            parts: list[BaselineRows] = []
            target = np.empty(n_rows)
            for block in _blocks(n_rows, spec.block_rows):
                norm = normalize(logits[block])
                parts.append(baseline_rows(norm, top_k, spec.tail_samples, rng))
                target[block] = norm.logprobs_at(targets[block])
            del logits
            rows = {
                name: np.concatenate([getattr(p, name) for p in parts])
                for name in BaselineRows.__dataclass_fields__
            }
            writer.write_chunk(index, chunk, target_logprob=target, **rows)
            yield ChunkScored(
                model.label,
                BASELINE,
                index,
                n_chunks,
                spec.first_scored,
                _pieces(backend, chunk),
                -target,
            )
        meta = {
            "key": key_parts,
            "set": spec.model_set.name,
            "baseline": str(model.path),
            "source": spec.source,
            "n_text_tokens": len(tokens),
        }
        baseline = writer.finish(meta)
        writer = None
    finally:
        backend.close()
        if writer is not None:
            writer.discard()
    return baseline, len(tokens)


def _chunk_rows(baseline: CorpusBaseline, span: slice) -> BaselineRows:
    """One chunk's baseline rows, read from the memory-mapped entry."""
    return BaselineRows(
        **{
            name: np.asarray(getattr(baseline, name)[span])
            for name in BaselineRows.__dataclass_fields__
        }
    )


def _score_quant(
    spec: KldSpec, factory: BackendFactory, model: ModelSpec, baseline: CorpusBaseline
) -> Generator[KldEvent, None, QuantKld]:
    """Score one quant chunk by chunk against the baseline's rows; returns its QuantKld."""
    yield ModelLoading(model.label, QUANT, str(model.path))
    started = time.perf_counter()
    backend = factory.open(_sized(model, spec.ctx))
    n_chunks = baseline.tokens.shape[0]
    n_rows = n_chunks * spec.rows_per_chunk
    nll, nll_base, coarse, gap = (
        np.empty(n_rows),
        np.empty(n_rows),
        np.empty(n_rows),
        np.empty(n_rows),
    )
    same_top = np.empty(n_rows, dtype=bool)
    accepted = np.empty(n_rows)
    try:
        yield ModelLoaded(model.label, QUANT, time.perf_counter() - started)
        scoring_started = time.perf_counter()
        for index in range(n_chunks):
            chunk = np.asarray(baseline.tokens[index])
            logits = _scored_logits(backend, spec, chunk)
            span = baseline.rows(index)
            base = _chunk_rows(baseline, span)
            targets = chunk[spec.first_scored + 1 :]
            for block in _blocks(spec.rows_per_chunk, spec.block_rows):
                norm = normalize(logits[block])
                rows = slice(span.start + block.start, span.start + block.stop)
                part = BaselineRows(
                    *(getattr(base, name)[block] for name in BaselineRows.__dataclass_fields__)
                )
                coarse[rows], gap[rows] = kl_rows(part, norm)
                accepted[rows] = acceptance_from_top_k(
                    part.top_logprobs, part.tail_logmass, norm.logprobs_at(part.top_ids)
                )
                nll[rows] = -norm.logprobs_at(targets[block])
                same_top[rows] = np.argmax(logits[block], axis=-1) == part.top_ids[:, 0]
            del logits
            nll_base[span] = -np.asarray(baseline.target_logprob[span])
            scores = TokenScores(
                nll[span], nll_base[span], coarse[span] + gap[span], same_top[span]
            )
            yield ChunkScored(
                model.label,
                QUANT,
                index,
                n_chunks,
                spec.first_scored,
                _pieces(backend, chunk),
                scores.nll.copy(),
                scores.kl.copy(),
                scores.p_diff,
                scores.same_top.copy(),
                scores.nll_base.copy(),
            )
    finally:
        backend.close()
    stats = kld_stats(TokenScores(nll, nll_base, coarse + gap, same_top, accepted))
    tail = TailCheck(
        float(coarse.mean()),
        float(gap.mean()),
        float(gap.std(ddof=1) / np.sqrt(n_rows)) if n_rows > 1 else 0.0,
    )
    return QuantKld(
        model.label, str(model.path), stats, time.perf_counter() - scoring_started, tail
    )
