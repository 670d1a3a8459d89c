"""The per-model scoring loops of a run: tokenized requests, the baseline pass and each quant's
pass.

`Prompts` turns a run's rendered prompts into backend requests for one loaded model (letter:
one request per question; cloze: one per choice) and its logits into answers. The two loops
restore what the run store already holds, score the rest batch by batch, store every batch as
it is scored and skip a question whose prompt does not fit the model's n_ctx.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory, ScoreRequest
from ggflip.choice.answers import (
    BaselineScores,
    ChoiceScore,
    QuestionRow,
    compare,
    score_cloze,
    score_letters,
)
from ggflip.choice.events import Event, QuestionScored, Resumed
from ggflip.choice.report import QuantSummary, summarize_quant
from ggflip.choice.runstore import BaseRecord, ModelProgress
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSpec
from ggflip.errors import BackendError
from ggflip.runs.events import BASELINE, QUANT, ModelLoaded, ModelLoading
from ggflip.runs.pipeline import RowMap, overlapped, scoring_workers
from ggflip.scoring.topk import BaselineRows, Normalized
from ggflip.tasks.prompts import PromptSet, letter_tokens
from ggflip.tasks.questions import QuestionSet

# A shared prefix shorter than this is not worth a decode of its own: such requests are
# packed whole into the same llama_decode calls instead.
MIN_SHARED_PREFIX = 32


class Prompts:
    """Tokenized requests of one run for one loaded backend, and how their logits become answers.

    Letter mode: one request per question, read at its last position. Cloze mode: one request
    per choice, read at the continuation's tokens. As in lm-evaluation-harness, context and
    context + continuation are tokenized separately and the continuation's tokens are the tail
    of the latter beyond the context's length, so a token merging across the boundary is scored
    as part of the continuation. `too_long` maps a question with a request longer than n_ctx
    to the reason it is skipped.
    """

    def __init__(
        self,
        backend: Backend,
        questions: QuestionSet,
        prompt_set: PromptSet,
        share_prefixes: bool = True,
    ) -> None:
        self.questions = questions.questions
        self.prompt_set = prompt_set
        if len(prompt_set.items) != len(self.questions):
            raise ValueError("one rendered prompt per question is needed")
        self.requests: list[tuple[ScoreRequest, ...]] = []
        self.targets: list[tuple[tuple[int, ...], ...]] = []
        self.too_long: dict[int, str] = {}
        self.letters = None
        if prompt_set.mode == "letter":
            max_options = max(len(q.choices) for q in self.questions)
            self.letters = letter_tokens(
                lambda text: backend.tokenize(text, add_bos=False), max_options
            )
        for index, (question, item) in enumerate(zip(self.questions, prompt_set.items)):
            requests, targets = [], []
            for choice, (context, continuation) in enumerate(
                zip(item.contexts, item.continuations)
            ):
                context_tokens = backend.tokenize(context, add_bos=True)
                if prompt_set.mode == "letter":
                    shared = 0
                    if share_prefixes and item.prefix_chars:
                        shared = _common_prefix(
                            [
                                backend.tokenize(context[: item.prefix_chars], add_bos=True),
                                context_tokens,
                            ]
                        )
                        shared = shared if shared >= MIN_SHARED_PREFIX else 0
                    requests.append(
                        ScoreRequest(tuple(context_tokens), (len(context_tokens) - 1,), shared)
                    )
                    continue
                whole = backend.tokenize(context + continuation, add_bos=True)
                start = len(context_tokens)
                if len(whole) <= start:
                    raise BackendError(
                        f"question {question.id}: choice {choice} has no tokens to score after its "
                        "context"
                    )
                requests.append(ScoreRequest(tuple(whole), tuple(range(start - 1, len(whole) - 1))))
                targets.append(tuple(whole[start:]))
            if share_prefixes and len(requests) > 1:
                # the choices of a cloze question share their context: decoded once, branched per
                # choice
                shared = _common_prefix([r.tokens for r in requests])
                if shared >= MIN_SHARED_PREFIX:
                    requests = [ScoreRequest(r.tokens, r.positions, shared) for r in requests]
            longest = max(len(r.tokens) for r in requests)
            if longest > backend.n_ctx:
                self.too_long[index] = (
                    f"prompt of {longest} tokens does not fit n_ctx={backend.n_ctx} (raise n_ctx "
                    "in models.toml)"
                )
            self.requests.append(tuple(requests))
            self.targets.append(tuple(targets))

    def n_rows(self, index: int) -> int:
        """How many positions of question `index` are scored (whether or not it fits n_ctx)."""
        return sum(len(r.positions) for r in self.requests[index])

    def rows_per_question(self) -> list[int]:
        """Scored positions per question as the baseline stores them: none for a question that does
        not fit."""
        return [0 if i in self.too_long else self.n_rows(i) for i in range(len(self.requests))]

    def score(self, index: int, blocks: Sequence[Normalized]) -> ChoiceScore:
        """The answer of question `index` from its normalized rows (one block per request)."""
        n_options = len(self.questions[index].choices)
        if self.letters is not None:
            return score_letters(blocks[0], self.letters.for_options(n_options))
        item = self.prompt_set.items[index]
        rule = self.prompt_set.answer_rule or "norm"
        return score_cloze(blocks, self.targets[index], item.choice_lengths, rule)


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


@dataclass(frozen=True)
class _Batch:
    """One llama.cpp call's questions: those not restored (`pending`), of which `scorable` fit."""

    pending: list[int]
    scorable: list[int]


def _decoder(
    backend: Backend, prompts: Prompts
) -> Callable[[_Batch], list[tuple[int, list[NDArray[np.float32]]]]]:
    """The llama.cpp part of a batch: each scorable question's logits, one array per request."""

    def decode(batch: _Batch) -> list[tuple[int, list[NDArray[np.float32]]]]:
        if not batch.scorable:
            return []
        requests = [request for i in batch.scorable for request in prompts.requests[i]]
        logits, cursor, out = backend.logits(requests), 0, []
        for index in batch.scorable:
            count = len(prompts.requests[index])
            out.append((index, logits[cursor : cursor + count]))
            cursor += count
        return out

    return decode


def _restored_events(
    label: str, role: str, n: int, restored: dict[int, QuestionRow | None]
) -> Iterator[Event]:
    """`Resumed`, then a `QuestionScored` per restored question, in order (nothing when none)."""
    if restored:
        yield Resumed(label, role, len(restored), n)
    for index in sorted(restored):
        yield QuestionScored(label, role, index + 1, n, restored[index])


def score_baseline(
    spec: RunSpec,
    factory: BackendFactory,
    prompt_set: PromptSet,
    top_k: int,
    progress: ModelProgress,
) -> Generator[Event, None, tuple[BaselineScores, dict[int, str]]]:
    """Score the baseline's questions not already stored; returns its scores and {index: reason} of
    skipped ones.

    The arrays are allocated once the prompts are tokenized (a cloze question's scored positions
    are only known then), or from the stored records when every question is restored.
    """
    model, questions = spec.model_set.baseline, spec.questions.questions
    n, max_options = len(questions), max(len(q.choices) for q in questions)
    restored = progress.restore_baseline(n, top_k, spec.resolved_tail_samples)
    yield from _restored_events(model.label, BASELINE, n, dict.fromkeys(restored))
    if len(restored) == n:
        counts = [0 if isinstance(r, str) else r.n_rows for _, r in sorted(restored.items())]
        baseline = BaselineScores.empty(n, max_options, top_k, counts, spec.resolved_tail_samples)
        for index, record in restored.items():
            if isinstance(record, BaseRecord):
                record.write_into(baseline, index)
        return baseline, {i: r for i, r in restored.items() if isinstance(r, str)}
    yield ModelLoading(model.label, BASELINE, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    try:
        yield ModelLoaded(model.label, BASELINE, time.perf_counter() - started)
        prompts = Prompts(backend, spec.questions, prompt_set, spec.share_prefixes)
        baseline = BaselineScores.empty(
            n, max_options, top_k, prompts.rows_per_question(), spec.resolved_tail_samples
        )
        skips: dict[int, str] = {}
        stale = []
        for index, record in list(restored.items()):
            try:
                if isinstance(record, str) != (index in prompts.too_long):
                    raise ValueError("skipped in the store but not now, or the other way round")
                if isinstance(record, str):
                    skips[index] = record
                else:
                    record.write_into(baseline, index)
            except ValueError:
                stale.append(index)
                del restored[index]
        progress.drop(stale)
        batches = []
        for indexes in _batches(n, spec.batch_size):
            pending = [i for i in indexes if i not in restored]
            skips.update({i: prompts.too_long[i] for i in pending if i in prompts.too_long})
            batches.append(_Batch(pending, [i for i in pending if i not in skips]))

        def score(
            batch: _Batch, logits: list[tuple[int, list[NDArray[np.float32]]]], row_map: RowMap
        ) -> list[tuple[int, ChoiceScore, list[Normalized], list[BaselineRows]]]:
            def question(
                item: tuple[int, list[NDArray[np.float32]]],
            ) -> tuple[int, ChoiceScore, list[Normalized], list[BaselineRows]]:
                index, rows = item
                blocks, records = baseline.normalize(index, rows)
                return index, prompts.score(index, blocks), blocks, records

            return row_map(question, logits)

        workers = scoring_workers(spec.scoring_threads, model.llama)
        decode = _decoder(backend, prompts)
        for batch, scored in overlapped(batches, decode, score, workers):
            fresh: dict[int, tuple[int, str | None]] = {
                i: (len(questions[i].choices), skips[i]) for i in batch.pending if i in skips
            }
            for index, answer, blocks, records in scored:
                baseline.record(index, answer, blocks, records)
                fresh[index] = (len(questions[index].choices), None)
            progress.record_baseline(baseline, fresh)
            for index in batch.pending:
                yield QuestionScored(model.label, BASELINE, index + 1, n, None)
    finally:
        backend.close()
    return baseline, skips


def score_quant(
    spec: RunSpec,
    factory: BackendFactory,
    model: ModelSpec,
    prompt_set: PromptSet,
    baseline: BaselineScores,
    base_skips: dict[int, str],
    progress: ModelProgress,
    role: str = QUANT,
) -> Generator[Event, None, tuple[QuantSummary, dict[int, str]]]:
    """Score a quant's questions not already stored; returns its summary and its own skipped
    questions. `role` names the pass in its events (a quant, or the noise floor)."""
    questions = spec.questions.questions
    n = len(questions)
    restored = progress.restore_quant()
    results: dict[int, QuestionRow | str] = dict(restored)
    yield from _restored_events(
        model.label,
        role,
        n,
        {i: r if isinstance(r, QuestionRow) else None for i, r in restored.items()},
    )
    backend: Backend | None = None
    scoring_started = time.perf_counter()
    try:
        batches = [
            _Batch([i for i in indexes if i not in results], [])
            for indexes in _batches(n, spec.batch_size)
        ]
        too_long: dict[int, str] = {}
        if any(i not in base_skips for batch in batches for i in batch.pending):
            yield ModelLoading(model.label, role, str(model.path))
            started = time.perf_counter()
            backend = factory.open(model)
            yield ModelLoaded(model.label, role, time.perf_counter() - started)
            scoring_started = time.perf_counter()
            prompts = Prompts(backend, spec.questions, prompt_set, spec.share_prefixes)
            if any(
                prompts.n_rows(i) != baseline.n_rows(i) for i in range(n) if i not in base_skips
            ):
                raise BackendError(
                    f"{model.path}: tokenizes the prompts differently from the baseline; is it "
                    "the same model?"
                )
            too_long = {i: r for i, r in prompts.too_long.items() if i not in base_skips}
            unscorable = base_skips.keys() | too_long.keys()
            batches = [
                _Batch(b.pending, [i for i in b.pending if i not in unscorable]) for b in batches
            ]

        def score(
            batch: _Batch, logits: list[tuple[int, list[NDArray[np.float32]]]], row_map: RowMap
        ) -> list[tuple[int, ChoiceScore, tuple[float, float], float]]:
            def question(
                item: tuple[int, list[NDArray[np.float32]]],
            ) -> tuple[int, ChoiceScore, tuple[float, float], float]:
                index, rows = item
                blocks = baseline.quant_normalize(index, rows)
                return (
                    index,
                    prompts.score(index, blocks),
                    baseline.kl_to(index, blocks),
                    baseline.acceptance_to(index, blocks),
                )

            return row_map(question, logits)

        if backend is not None:
            workers = scoring_workers(spec.scoring_threads, model.llama)
            work = overlapped(batches, _decoder(backend, prompts), score, workers)
        else:
            work = ((batch, []) for batch in batches)
        for batch, scored in work:
            fresh: dict[int, QuestionRow | str] = {
                i: too_long[i] for i in batch.pending if i in too_long
            }
            for index, quant_score, kl, accepted in scored:
                question = questions[index]
                base_score = baseline.choice_score(index, len(question.choices))
                fresh[index] = compare(index, question, base_score, quant_score, kl, accepted)
            progress.record_quant(fresh)
            results.update(fresh)
            for index in batch.pending:
                item = fresh.get(index)
                yield QuestionScored(
                    model.label,
                    role,
                    index + 1,
                    n,
                    item if isinstance(item, QuestionRow) else None,
                )
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
