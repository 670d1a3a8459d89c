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
from ggflip.prompts import PromptSet, letter_tokens, render_prompts
from ggflip.questions import QuestionSet
from ggflip.report import BaselineSummary, QuantSummary, Report, summarize_quant
from ggflip.scoring import BaselineScores, ChoiceScore, compare, score_cloze, score_letters_rows

DEFAULT_TOP_K = 512
DEFAULT_CLOZE_TOP_K = 64
# A shared prefix shorter than this is not worth a decode of its own: such requests are
# packed whole into the same llama_decode calls instead.
MIN_SHARED_PREFIX = 32


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; both front ends build one and call `run_comparison`."""

    model_set: ModelSet
    questions: QuestionSet
    task: str = "mmlu"
    cache_dir: Path | None = None
    top_k: int | None = None
    batch_size: int = 4
    prompts: PromptSet | None = None
    share_prefixes: bool = True

    @property
    def prompt_set(self) -> PromptSet:
        """The rendered prompts: as given, else MMLU's zero-shot letter prompt for every question."""
        if self.prompts is not None:
            return self.prompts
        from ggflip.tasks import get_task

        return render_prompts(get_task("mmlu"), self.questions.questions, lambda q: (), 0)

    @property
    def resolved_top_k(self) -> int:
        """K of the baseline cache: as given, else 512 for letter and 64 for cloze questions."""
        if self.top_k is not None:
            return self.top_k
        return DEFAULT_CLOZE_TOP_K if self.prompt_set.mode == "cloze" else DEFAULT_TOP_K


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
    """Tokenized requests of one run for one loaded backend, and how their logits become answers.

    Letter mode: one request per question, read at its last position. Cloze mode: one request
    per choice, read at the continuation's tokens. As in lm-evaluation-harness, context and
    context + continuation are tokenized separately and the continuation's tokens are the tail
    of the latter beyond the context's length, so a token merging across the boundary is scored
    as part of the continuation.
    """

    def __init__(self, backend: Backend, questions: QuestionSet, prompt_set: PromptSet, share_prefixes: bool = True) -> None:
        self.questions = questions.questions
        self.prompt_set = prompt_set
        if len(prompt_set.items) != len(self.questions):
            raise ValueError("one rendered prompt per question is needed")
        self.requests: list[tuple[ScoreRequest, ...]] = []
        self.targets: list[tuple[tuple[int, ...], ...]] = []
        self.letters = None
        if prompt_set.mode == "letter":
            max_options = max(len(q.choices) for q in self.questions)
            self.letters = letter_tokens(lambda text: backend.tokenize(text, add_bos=False), max_options)
        for question, item in zip(self.questions, prompt_set.items):
            requests, targets = [], []
            for choice, (context, continuation) in enumerate(zip(item.contexts, item.continuations)):
                context_tokens = backend.tokenize(context, add_bos=True)
                if prompt_set.mode == "letter":
                    shared = 0
                    if share_prefixes and item.prefix_chars:
                        shared = _common_prefix([backend.tokenize(context[: item.prefix_chars], add_bos=True), context_tokens])
                        shared = shared if shared >= MIN_SHARED_PREFIX else 0
                    requests.append(ScoreRequest(tuple(context_tokens), (len(context_tokens) - 1,), shared))
                    continue
                whole = backend.tokenize(context + continuation, add_bos=True)
                start = len(context_tokens)
                if len(whole) <= start:
                    raise BackendError(f"question {question.id}: choice {choice} has no tokens to score after its context")
                requests.append(ScoreRequest(tuple(whole), tuple(range(start - 1, len(whole) - 1))))
                targets.append(tuple(whole[start:]))
            if share_prefixes and len(requests) > 1:
                # the choices of a cloze question share their context: decoded once, branched per choice
                shared = _common_prefix([r.tokens for r in requests])
                if shared >= MIN_SHARED_PREFIX:
                    requests = [ScoreRequest(r.tokens, r.positions, shared) for r in requests]
            for request in requests:
                if len(request.tokens) > backend.n_ctx:
                    raise BackendError(
                        f"question {question.id}: prompt of {len(request.tokens)} tokens does not fit "
                        f"n_ctx={backend.n_ctx}; raise n_ctx in models.toml"
                    )
            self.requests.append(tuple(requests))
            self.targets.append(tuple(targets))

    def rows_per_question(self) -> list[int]:
        return [sum(len(r.positions) for r in requests) for requests in self.requests]

    def score(self, index: int, logits: Sequence[np.ndarray]) -> tuple[ChoiceScore, list[metrics.NormalizedRows]]:
        """The answer and the normalized log-prob blocks (one per request) of question `index`."""
        blocks = [metrics.NormalizedRows(rows) for rows in logits]
        n_options = len(self.questions[index].choices)
        if self.letters is not None:
            return score_letters_rows(blocks[0], self.letters.for_options(n_options)), blocks
        item = self.prompt_set.items[index]
        rule = self.prompt_set.answer_rule or "norm"
        return score_cloze(blocks, self.targets[index], item.choice_lengths, rule), blocks


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence shares."""
    n = min(len(s) for s in sequences)
    for i in range(n):
        token = sequences[0][i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return n


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _score(backend: Backend, prompts: _Prompts, indexes: range) -> Iterator[tuple[int, ChoiceScore, list[metrics.NormalizedRows]]]:
    """Each question's answer and its full-vocabulary float64 log-prob blocks, for questions in `indexes`."""
    requests = [request for i in indexes for request in prompts.requests[i]]
    logits = backend.logits(requests)
    cursor = 0
    for index in indexes:
        count = len(prompts.requests[index])
        score, blocks = prompts.score(index, logits[cursor : cursor + count])
        cursor += count
        yield index, score, blocks


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
    prompt_set = spec.prompt_set
    top_k = min(spec.resolved_top_k, probes[0].n_vocab)
    key_parts = {
        "model": probes[0].identity,
        "vocab": probes[0].vocab_fingerprint,
        "prompt": prompt_set.version,
        "prompts": prompt_set.digest(),
        "questions": questions.digest(),
        "top_k": top_k,
    }
    key = cache_key(key_parts)
    n = len(questions.questions)
    baseline = cache.load(key, n, top_k) if cache else None
    quant_summaries: list[QuantSummary] = []
    if baseline is not None:
        yield BaselineFromCache(model_set.baseline.label, str(cache.root if cache else ""))
        baseline_seconds, from_cache = 0.0, True
    else:
        started = time.perf_counter()
        baseline = yield from _score_baseline(spec, factory, prompt_set, top_k)
        baseline_seconds, from_cache = time.perf_counter() - started, False
        if cache:
            cache.save(key, baseline, {"key": key_parts, "set": model_set.name, "baseline": str(model_set.baseline.path)})
    baseline_summary = _baseline_summary(model_set.baseline, questions, baseline, baseline_seconds, from_cache)
    yield BaselineFinished(baseline_summary)
    for quant in model_set.quants:
        summary = yield from _score_quant(spec, factory, quant, baseline, prompt_set)
        quant_summaries.append(summary)
        yield QuantFinished(summary)
    yield RunFinished(_report(spec, baseline_summary, quant_summaries, complete=True))


def partial_report(spec: RunSpec, baseline: BaselineSummary | None, quants: Sequence[QuantSummary]) -> Report:
    """A report of what finished before a run stopped early."""
    return _report(spec, baseline, quants, complete=False)


def _report(spec: RunSpec, baseline: BaselineSummary | None, quants: Sequence[QuantSummary], complete: bool) -> Report:
    prompt_set = spec.prompt_set
    return Report(
        set=spec.model_set.name,
        task=spec.task,
        prompt_version=prompt_set.version,
        source=spec.questions.source,
        n_questions=len(spec.questions.questions),
        skipped_rows=spec.questions.skipped,
        cache_top_k=spec.resolved_top_k,
        baseline=baseline,
        quants=tuple(quants),
        complete=complete,
        mode=prompt_set.mode,
        answer_rule=prompt_set.answer_rule,
        n_shots=prompt_set.n_shots,
    )


def _baseline_summary(
    model: ModelSpec, questions: QuestionSet, scores: BaselineScores, seconds: float, from_cache: bool
) -> BaselineSummary:
    correct = sum(
        int(scores.choice_score(i, len(q.choices)).choice == q.gold) for i, q in enumerate(questions.questions)
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


def _score_baseline(
    spec: RunSpec, factory: BackendFactory, prompt_set: PromptSet, top_k: int
) -> Generator[Event, None, BaselineScores]:
    model = spec.model_set.baseline
    yield ModelLoading(model.label, BASELINE, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    try:
        yield ModelLoaded(model.label, BASELINE, time.perf_counter() - started)
        prompts = _Prompts(backend, spec.questions, prompt_set, spec.share_prefixes)
        n = len(prompts.questions)
        max_options = max(len(q.choices) for q in prompts.questions)
        baseline = BaselineScores.empty(n, max_options, top_k, prompts.rows_per_question())
        for indexes in _batches(n, spec.batch_size):
            for index, score, blocks in _score(backend, prompts, indexes):
                baseline.record(index, score, blocks)
                yield QuestionScored(model.label, BASELINE, index + 1, n, None)
    finally:
        backend.close()
    return baseline


def _score_quant(
    spec: RunSpec, factory: BackendFactory, model: ModelSpec, baseline: BaselineScores, prompt_set: PromptSet
) -> Generator[Event, None, QuantSummary]:
    yield ModelLoading(model.label, QUANT, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    rows = []
    try:
        yield ModelLoaded(model.label, QUANT, time.perf_counter() - started)
        scoring_started = time.perf_counter()
        prompts = _Prompts(backend, spec.questions, prompt_set, spec.share_prefixes)
        if prompts.rows_per_question() != [baseline.n_rows(i) for i in range(len(prompts.questions))]:
            raise BackendError(f"{model.path}: tokenizes the prompts differently from the baseline; is it the same model?")
        n = len(prompts.questions)
        for indexes in _batches(n, spec.batch_size):
            for index, quant_score, blocks in _score(backend, prompts, indexes):
                question = prompts.questions[index]
                base_score = baseline.choice_score(index, len(question.choices))
                row = compare(index, question, base_score, quant_score, baseline.kl_to(index, blocks))
                rows.append(row)
                yield QuestionScored(model.label, QUANT, index + 1, n, row)
    finally:
        backend.close()
    return summarize_quant(model.label, str(model.path), rows, time.perf_counter() - scoring_started)
