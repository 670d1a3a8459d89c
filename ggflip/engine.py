"""The comparison engine: baseline once (or from the cache), then each quant, as a stream of events.

`run_comparison` is a generator of `ggflip.events` values. Front ends iterate it; closing the
generator early (Ctrl-C, a cancel button) stops between batches of questions and frees the
loaded model. Every check that can fail on user input (files, vocabularies, prompt
lengths) runs before the first model is scored.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggflip import metrics
from ggflip.backends.base import Backend, BackendFactory, ModelProbe, ScoreRequest
from ggflip.cache import BaselineCache, cache_key
from ggflip.config import ModelSet, ModelSpec
from ggflip.errors import BackendError, GgflipError, VocabMismatchError
from ggflip.events import (
    BASELINE,
    QUANT,
    BaselineFinished,
    BaselineFromCache,
    Event,
    ModelLoaded,
    ModelLoading,
    QuantFinished,
    QuestionScored,
    Resumed,
    RunFinished,
    RunStarted,
)
from ggflip.locks import CacheLock
from ggflip.prompts import PROMPT_VERSION, letter_tokens, render_prompt
from ggflip.questions import QuestionSet
from ggflip.report import BaselineSummary, QuantSummary, Report, SkippedQuestion, summarize_quant
from ggflip.resume import key_parts, model_key, run_progress  # noqa: F401 - run_progress is part of the engine's API
from ggflip.runstore import ModelProgress, RunStore, StoreSession
from ggflip.scoring import BaselineScores, LetterScore, QuestionRow, compare, score_letters

DEFAULT_TOP_K = 512
log = logging.getLogger("ggflip.engine")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; both front ends build one and call `run_comparison`."""

    model_set: ModelSet
    questions: QuestionSet
    task: str = "mmlu"
    cache_dir: Path | None = None
    top_k: int = DEFAULT_TOP_K
    batch_size: int = 4
    run_store: RunStore | None = None
    resume: bool = True


def check_vocabularies(model_set: ModelSet, probes: Sequence[ModelProbe]) -> None:
    """Refuse a set whose quants do not share the baseline's architecture and vocabulary.

    Raises:
        VocabMismatchError: naming the quant and what differs.
    """
    base = probes[0]
    for spec, probe in zip(model_set.quants, probes[1:]):
        if probe.architecture != base.architecture:
            raise VocabMismatchError(
                f"{spec.path}: architecture '{probe.architecture}', but baseline {model_set.baseline.path} is "
                f"'{base.architecture}'; a quant must be made from the same model as its baseline"
            )
        if probe.n_vocab != base.n_vocab:
            raise VocabMismatchError(
                f"{spec.path}: vocabulary of {probe.n_vocab} tokens, but baseline {model_set.baseline.path} has "
                f"{base.n_vocab}; a quant must be made from the same model as its baseline"
            )
        if probe.vocab_fingerprint != base.vocab_fingerprint:
            raise VocabMismatchError(
                f"{spec.path}: same vocabulary size as baseline {model_set.baseline.path} but different tokens; "
                "a quant must be made from the same model as its baseline"
            )


class _Prompts:
    """Tokenized prompts and letter tokens of one run, for one loaded backend."""

    def __init__(self, backend: Backend, questions: QuestionSet) -> None:
        self.questions = questions.questions
        max_options = max(len(q.choices) for q in self.questions)
        self.letters = letter_tokens(lambda text: backend.tokenize(text, add_bos=False), max_options)
        self.tokens = [tuple(backend.tokenize(render_prompt(q), add_bos=True)) for q in self.questions]
        self.too_long = {
            index: f"prompt of {len(tokens)} tokens does not fit n_ctx={backend.n_ctx} (raise n_ctx in models.toml)"
            for index, tokens in enumerate(self.tokens)
            if len(tokens) > backend.n_ctx
        }

    def request(self, index: int) -> ScoreRequest:
        tokens = self.tokens[index]
        return ScoreRequest(tokens=tokens, positions=(len(tokens) - 1,))

    def variants(self, index: int) -> tuple[tuple[int, ...], ...]:
        return self.letters.for_options(len(self.questions[index].choices))


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _score(backend: Backend, prompts: _Prompts, indexes: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Full-vocabulary float64 log-probs at the answer position, per question in `indexes`."""
    if not indexes:
        return
    logits = backend.logits([prompts.request(i) for i in indexes])
    for index, rows in zip(indexes, logits):
        yield index, metrics.log_softmax(rows[0])


def run_comparison(spec: RunSpec, factory: BackendFactory) -> Generator[Event, None, None]:
    """Score the baseline (or read it from the cache), then each quant, yielding events.

    With `spec.run_store`, every batch of scored questions is stored as it is scored and a
    re-run restores them (`Resumed`) instead of scoring them again. With `spec.cache_dir`,
    the run holds a lock there, so a second process running the same comparison waits.

    Raises:
        ModelFileError, VocabMismatchError, BackendError, CacheError, DiskFullError: before
        scoring for bad inputs, or when llama.cpp fails mid-run.
    """
    model_set = spec.model_set
    probes = [factory.probe(model) for model in model_set.models]
    check_vocabularies(model_set, probes)
    parts = key_parts(spec, probes[0])
    key = cache_key(parts)
    lock = CacheLock(spec.cache_dir, f"run-{key}", "running this same comparison") if spec.cache_dir else None
    session: StoreSession | None = None
    if lock:
        lock.acquire()
    try:
        session = spec.run_store.open() if spec.run_store else None
        progress = [ModelProgress(session, key, model_key(m, p), m.label) for m, p in zip(model_set.models, probes)]
        if not spec.resume:
            for model_progress in progress:
                model_progress.forget()
        yield from _run(spec, factory, parts, key, progress, [file_facts(p) for p in probes])
    finally:
        if session:
            session.close()
        if lock:
            lock.release()


def file_facts(probe: ModelProbe) -> dict[str, Any]:
    """The model-file facts a report carries next to each summary."""
    return {"bits_per_weight": probe.bits_per_weight, "file_size": probe.file_size, "n_params": probe.n_params}


def _run(
    spec: RunSpec,
    factory: BackendFactory,
    parts: dict[str, object],
    key: str,
    progress: Sequence[ModelProgress],
    facts: Sequence[dict[str, Any]],
) -> Iterator[Event]:
    model_set, questions = spec.model_set, spec.questions
    yield RunStarted(model_set.name, tuple(m.label for m in model_set.models), len(questions.questions))
    cache = BaselineCache(spec.cache_dir) if spec.cache_dir else None
    top_k = int(parts["top_k"])  # type: ignore[call-overload]
    n, max_options = len(questions.questions), max(len(q.choices) for q in questions.questions)
    cached = cache.load(key, n, top_k) if cache else None
    if cached is not None:
        baseline, base_skips = cached
        yield BaselineFromCache(model_set.baseline.label, str(cache.root if cache else ""))
        baseline_seconds, from_cache = 0.0, True
    else:
        baseline = BaselineScores.empty(n, max_options, top_k)
        started = time.perf_counter()
        base_skips = yield from _score_baseline(spec, factory, baseline, progress[0])
        baseline_seconds, from_cache = time.perf_counter() - started, False
        if cache:
            meta = {"key": parts, "set": model_set.name, "baseline": str(model_set.baseline.path)}
            cache.save(key, baseline, meta, base_skips)
            try:
                progress[0].forget()  # the baseline cache holds it now
            except GgflipError as exc:
                log.warning("could not drop the baseline's stored rows (%s); they are only redundant", exc)
    skipped = _skipped(questions, model_set.baseline, base_skips)
    if len(base_skips) == n:
        raise BackendError(f"{model_set.baseline.path}: no prompt fits n_ctx; raise n_ctx in models.toml")
    baseline_summary = dataclasses.replace(
        _baseline_summary(model_set.baseline, questions, baseline, base_skips, baseline_seconds, from_cache), **facts[0]
    )
    yield BaselineFinished(baseline_summary, tuple(skipped))
    quant_summaries: list[QuantSummary] = []
    for quant, quant_progress, quant_facts in zip(model_set.quants, progress[1:], facts[1:]):
        summary, quant_skips = yield from _score_quant(spec, factory, quant, baseline, base_skips, quant_progress)
        summary = dataclasses.replace(summary, **quant_facts)
        quant_summaries.append(summary)
        quant_skipped = _skipped(questions, quant, quant_skips)
        skipped += quant_skipped
        yield QuantFinished(summary, tuple(quant_skipped))
    yield RunFinished(_report(spec, baseline_summary, quant_summaries, complete=True, skipped=skipped))


def _skipped(questions: QuestionSet, model: ModelSpec, skips: dict[int, str]) -> list[SkippedQuestion]:
    for index, reason in sorted(skips.items()):
        log.warning("question %s skipped for %s: %s", questions.questions[index].id, model.label, reason)
    return [SkippedQuestion(i, questions.questions[i].id, model.label, r) for i, r in sorted(skips.items())]


def partial_report(
    spec: RunSpec,
    baseline: BaselineSummary | None,
    quants: Sequence[QuantSummary],
    skipped: Sequence[SkippedQuestion] = (),
) -> Report:
    """A report of what finished before a run stopped early."""
    return _report(spec, baseline, quants, complete=False, skipped=skipped)


def _report(
    spec: RunSpec,
    baseline: BaselineSummary | None,
    quants: Sequence[QuantSummary],
    complete: bool,
    skipped: Sequence[SkippedQuestion] = (),
) -> Report:
    return Report(
        set=spec.model_set.name,
        task=spec.task,
        prompt_version=PROMPT_VERSION,
        source=spec.questions.source,
        n_questions=len(spec.questions.questions),
        skipped_rows=spec.questions.skipped,
        cache_top_k=spec.top_k,
        baseline=baseline,
        quants=tuple(quants),
        complete=complete,
        skipped_questions=tuple(skipped),
    )


def _baseline_summary(
    model: ModelSpec,
    questions: QuestionSet,
    scores: BaselineScores,
    skips: dict[int, str],
    seconds: float,
    from_cache: bool,
) -> BaselineSummary:
    scored = [(i, q) for i, q in enumerate(questions.questions) if i not in skips]
    correct = sum(int(scores.letter_score(i, len(q.choices)).choice == q.gold) for i, q in scored)
    return BaselineSummary(
        label=model.label,
        path=str(model.path),
        accuracy=correct / len(scored),
        accuracy_ci=metrics.wilson_interval(correct, len(scored)),
        seconds=seconds,
        from_cache=from_cache,
    )


def _restored_events(label: str, role: str, n: int, restored: dict[int, QuestionRow | str | None]) -> Iterator[Event]:
    """`Resumed`, then a `QuestionScored` per restored question, in order (nothing when none)."""
    if restored:
        yield Resumed(label, role, len(restored), n)
    for index in sorted(restored):
        item = restored[index]
        yield QuestionScored(label, role, index + 1, n, item if isinstance(item, QuestionRow) else None)


def _score_baseline(
    spec: RunSpec, factory: BackendFactory, baseline: BaselineScores, progress: ModelProgress
) -> Generator[Event, None, dict[int, str]]:
    """Score the baseline's questions not already stored; returns {index: reason} of skipped ones."""
    model, questions = spec.model_set.baseline, spec.questions.questions
    n = len(questions)
    restored = progress.restore_baseline(baseline)
    skips = {index: reason for index, reason in restored.items() if reason is not None}
    yield from _restored_events(model.label, BASELINE, n, dict(restored))
    if len(restored) == n:
        return skips
    yield ModelLoading(model.label, BASELINE, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    try:
        yield ModelLoaded(model.label, BASELINE, time.perf_counter() - started)
        prompts = _Prompts(backend, spec.questions)
        for indexes in _batches(n, spec.batch_size):
            pending = [i for i in indexes if i not in restored]
            fresh: dict[int, tuple[int, str | None]] = {}
            for index in pending:
                if index in prompts.too_long:
                    skips[index] = prompts.too_long[index]
                    fresh[index] = (len(questions[index].choices), skips[index])
            for index, logprobs in _score(backend, prompts, [i for i in pending if i not in skips]):
                baseline.record(index, score_letters(logprobs, prompts.variants(index)), logprobs)
                fresh[index] = (len(questions[index].choices), None)
            progress.record_baseline(baseline, fresh)
            for index in pending:
                yield QuestionScored(model.label, BASELINE, index + 1, n, None)
    finally:
        backend.close()
    for index in skips:
        baseline.top_token[index] = -1  # marks a skipped question in the cached arrays
    return skips


def _score_quant(
    spec: RunSpec,
    factory: BackendFactory,
    model: ModelSpec,
    baseline: BaselineScores,
    base_skips: dict[int, str],
    progress: ModelProgress,
) -> Generator[Event, None, tuple[QuantSummary, dict[int, str]]]:
    """Score a quant's questions not already stored; returns its summary and its own skipped questions."""
    questions = spec.questions.questions
    n = len(questions)
    restored = progress.restore_quant()
    results: dict[int, QuestionRow | str] = dict(restored)
    yield from _restored_events(model.label, QUANT, n, dict(restored))
    backend: Backend | None = None
    prompts: _Prompts | None = None
    scoring_started = time.perf_counter()
    try:
        for indexes in _batches(n, spec.batch_size):
            pending = [i for i in indexes if i not in results]
            if prompts is None and any(i not in base_skips for i in pending):
                yield ModelLoading(model.label, QUANT, str(model.path))
                started = time.perf_counter()
                backend = factory.open(model)
                yield ModelLoaded(model.label, QUANT, time.perf_counter() - started)
                scoring_started = time.perf_counter()
                prompts = _Prompts(backend, spec.questions)
            fresh: dict[int, QuestionRow | str] = {}
            if backend is not None and prompts is not None:
                fresh.update({i: prompts.too_long[i] for i in pending if i not in base_skips and i in prompts.too_long})
                scorable = [i for i in pending if i not in base_skips and i not in fresh]
                for index, logprobs in _score(backend, prompts, scorable):
                    question = questions[index]
                    quant_score = score_letters(logprobs, prompts.variants(index))
                    base_score: LetterScore = baseline.letter_score(index, len(question.choices))
                    fresh[index] = compare(index, question, base_score, quant_score, baseline.kl_to(index, logprobs))
            progress.record_quant(fresh)
            results.update(fresh)
            for index in pending:
                item = fresh.get(index)
                yield QuestionScored(model.label, QUANT, index + 1, n, item if isinstance(item, QuestionRow) else None)
    finally:
        if backend is not None:
            backend.close()
    seconds = time.perf_counter() - scoring_started if backend is not None else 0.0
    rows = [item for _, item in sorted(results.items()) if isinstance(item, QuestionRow)]
    if not rows:
        raise BackendError(f"{model.path}: no prompt fits n_ctx; raise n_ctx in models.toml")
    skips = {index: item for index, item in results.items() if isinstance(item, str)}
    summary = summarize_quant(model.label, str(model.path), rows, seconds)
    if restored:  # the speed is that of the questions scored in this process
        n_scored = sum(isinstance(results[i], QuestionRow) and i not in restored for i in results)
        speed = n_scored / seconds if seconds > 0 else float("nan")
        summary = dataclasses.replace(summary, questions_per_second=speed)
    return summary, skips
