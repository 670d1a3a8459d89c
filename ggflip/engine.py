"""The comparison engine: baseline once (or from the cache), then each quant, as a stream of events.

`run_comparison` is a generator of `ggflip.events` values. Front ends iterate it; closing the
generator early (Ctrl-C, a cancel button) stops between batches of questions and frees the
loaded model. Every check that can fail on user input (files, vocabularies, prompt
lengths) runs before the first model is scored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Iterator, Sequence

import numpy as np

from ggflip import metrics
from ggflip.backends.base import Backend, BackendFactory, ModelProbe, ScoreRequest
from ggflip.cache import BaselineCache, cache_key
from ggflip.config import ModelSet, ModelSpec
from ggflip.errors import BackendError, VocabMismatchError
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
    RunFinished,
    RunStarted,
)
from ggflip.prompts import PROMPT_VERSION, letter_tokens, render_prompt
from ggflip.questions import QuestionSet
from ggflip.report import BaselineSummary, QuantSummary, Report, summarize_quant
from ggflip.scoring import BaselineScores, LetterScore, compare, score_letters

DEFAULT_TOP_K = 512


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; both front ends build one and call `run_comparison`."""

    model_set: ModelSet
    questions: QuestionSet
    task: str = "mmlu"
    cache_dir: Path | None = None
    top_k: int = DEFAULT_TOP_K
    batch_size: int = 4


def check_vocabularies(model_set: ModelSet, probes: Sequence[ModelProbe]) -> None:
    """Refuse a set whose quants do not share the baseline's vocabulary (size and token list).

    Raises:
        VocabMismatchError: naming the quant and what differs.
    """
    base = probes[0]
    for spec, probe in zip(model_set.quants, probes[1:]):
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
        for question, tokens in zip(self.questions, self.tokens):
            if len(tokens) > backend.n_ctx:
                raise BackendError(
                    f"question {question.id}: prompt of {len(tokens)} tokens does not fit n_ctx={backend.n_ctx}; "
                    "raise n_ctx in models.toml"
                )

    def request(self, index: int) -> ScoreRequest:
        tokens = self.tokens[index]
        return ScoreRequest(tokens=tokens, positions=(len(tokens) - 1,))

    def variants(self, index: int) -> tuple[tuple[int, ...], ...]:
        return self.letters.for_options(len(self.questions[index].choices))


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _score(backend: Backend, prompts: _Prompts, indexes: range) -> Iterator[tuple[int, np.ndarray]]:
    """Full-vocabulary float64 log-probs at the answer position, per question in `indexes`."""
    logits = backend.logits([prompts.request(i) for i in indexes])
    for index, rows in zip(indexes, logits):
        yield index, metrics.log_softmax(rows[0])


def run_comparison(spec: RunSpec, factory: BackendFactory) -> Generator[Event, None, None]:
    """Score the baseline (or read it from the cache), then each quant, yielding events.

    Raises:
        ModelFileError, VocabMismatchError, BackendError, CacheError, DiskFullError: before
        scoring for bad inputs, or when llama.cpp fails mid-run.
    """
    model_set, questions = spec.model_set, spec.questions
    probes = [factory.probe(model) for model in model_set.models]
    check_vocabularies(model_set, probes)
    yield RunStarted(model_set.name, tuple(m.label for m in model_set.models), len(questions.questions))

    cache = BaselineCache(spec.cache_dir) if spec.cache_dir else None
    top_k = min(spec.top_k, probes[0].n_vocab)
    key_parts = {
        "model": probes[0].identity,
        "vocab": probes[0].vocab_fingerprint,
        "prompt": PROMPT_VERSION,
        "questions": questions.digest(),
        "top_k": top_k,
    }
    key = cache_key(key_parts)
    n, max_options = len(questions.questions), max(len(q.choices) for q in questions.questions)
    baseline = cache.load(key, n, top_k) if cache else None
    quant_summaries: list[QuantSummary] = []
    if baseline is not None:
        yield BaselineFromCache(model_set.baseline.label, str(cache.root if cache else ""))
        baseline_seconds, from_cache = 0.0, True
    else:
        baseline = BaselineScores.empty(n, max_options, top_k)
        started = time.perf_counter()
        yield from _score_baseline(spec, factory, baseline)
        baseline_seconds, from_cache = time.perf_counter() - started, False
        if cache:
            cache.save(key, baseline, {"key": key_parts, "set": model_set.name, "baseline": str(model_set.baseline.path)})
    baseline_summary = _baseline_summary(model_set.baseline, questions, baseline, baseline_seconds, from_cache)
    yield BaselineFinished(baseline_summary)
    for quant in model_set.quants:
        summary = yield from _score_quant(spec, factory, quant, baseline)
        quant_summaries.append(summary)
        yield QuantFinished(summary)
    yield RunFinished(_report(spec, baseline_summary, quant_summaries, complete=True))


def partial_report(spec: RunSpec, baseline: BaselineSummary | None, quants: Sequence[QuantSummary]) -> Report:
    """A report of what finished before a run stopped early."""
    return _report(spec, baseline, quants, complete=False)


def _report(spec: RunSpec, baseline: BaselineSummary | None, quants: Sequence[QuantSummary], complete: bool) -> Report:
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
    )


def _baseline_summary(
    model: ModelSpec, questions: QuestionSet, scores: BaselineScores, seconds: float, from_cache: bool
) -> BaselineSummary:
    correct = sum(
        int(scores.letter_score(i, len(q.choices)).choice == q.gold) for i, q in enumerate(questions.questions)
    )
    n = len(questions.questions)
    return BaselineSummary(
        label=model.label,
        path=str(model.path),
        accuracy=correct / n,
        accuracy_ci=metrics.wilson_interval(correct, n),
        seconds=seconds,
        from_cache=from_cache,
    )


def _score_baseline(spec: RunSpec, factory: BackendFactory, baseline: BaselineScores) -> Generator[Event, None, None]:
    model = spec.model_set.baseline
    yield ModelLoading(model.label, BASELINE, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    try:
        yield ModelLoaded(model.label, BASELINE, time.perf_counter() - started)
        prompts = _Prompts(backend, spec.questions)
        n = len(prompts.questions)
        for indexes in _batches(n, spec.batch_size):
            for index, logprobs in _score(backend, prompts, indexes):
                baseline.record(index, score_letters(logprobs, prompts.variants(index)), logprobs)
                yield QuestionScored(model.label, BASELINE, index + 1, n, None)
    finally:
        backend.close()


def _score_quant(
    spec: RunSpec, factory: BackendFactory, model: ModelSpec, baseline: BaselineScores
) -> Generator[Event, None, QuantSummary]:
    yield ModelLoading(model.label, QUANT, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    rows = []
    try:
        yield ModelLoaded(model.label, QUANT, time.perf_counter() - started)
        scoring_started = time.perf_counter()
        prompts = _Prompts(backend, spec.questions)
        n = len(prompts.questions)
        for indexes in _batches(n, spec.batch_size):
            for index, logprobs in _score(backend, prompts, indexes):
                question = prompts.questions[index]
                quant_score = score_letters(logprobs, prompts.variants(index))
                base_score: LetterScore = baseline.letter_score(index, len(question.choices))
                row = compare(index, question, base_score, quant_score, baseline.kl_to(index, logprobs))
                rows.append(row)
                yield QuestionScored(model.label, QUANT, index + 1, n, row)
    finally:
        backend.close()
    return summarize_quant(model.label, str(model.path), rows, time.perf_counter() - scoring_started)
