"""The per-model scoring loops of a run: the baseline pass and each quant's pass.

Each loop tokenizes the run's prompts for its loaded model (`ggflip.choice.requests.Prompts`),
restores what the run store already holds, scores the rest batch by batch, stores every batch as
it is scored and skips a question whose prompt does not fit the model's n_ctx.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory
from ggflip.choice.answers import ChoiceScore, QuestionRow, compare
from ggflip.choice.baseline import BaselineScores
from ggflip.choice.events import Event, QuestionScored, Resumed
from ggflip.choice.report import QuantSummary, summarize_quant
from ggflip.choice.requests import Prompts
from ggflip.choice.row_store import BaseRecord, StoredQuestions
from ggflip.choice.spec import RunSpec, groups_by_length
from ggflip.config.models_toml import ModelSpec
from ggflip.errors import BackendError
from ggflip.runs.events import BASELINE, QUANT
from ggflip.runs.loading import open_model
from ggflip.runs.pipeline import RowMap, overlapped
from ggflip.scoring.topk import BaselineRows, Normalized
from ggflip.tasks.prompts import PromptSet

# A batch's logits as `_decoder` returns them: (question index, one array per request).
_Logits = list[tuple[int, list[NDArray[np.float32]]]]


def _groups(spec: RunSpec, prompts: Prompts | None) -> list[list[int]]:
    """The run's questions in llama.cpp calls of `spec.batch_size`: in question order, or, when the
    run groups by length (`groups_by_length`: its prompts share no prefix, so each decodes on a KV
    stream of its own), ordered by their longest request (ties by index) before they are cut, so
    a call's prompts are about as long as each other. llama.cpp splits a call over KV streams
    into ubatches of as many tokens from every sequence, so one short prompt beside three long
    ones leaves the rest of the call in small ubatches. The order is a function of the questions
    and the tokenizer alone (the same for every model of a run, and for a resumed run); without
    `prompts` (a quant's pass before its model is loaded, to see what is left) question order."""
    n = len(spec.questions.questions)
    order = list(range(n))
    if prompts is not None and groups_by_length(spec):
        longest = [max((len(r.tokens) for r in prompts.requests[i]), default=0) for i in order]
        order.sort(key=lambda i: (longest[i], i))
    return [order[start : start + spec.batch_size] for start in range(0, n, spec.batch_size)]


@dataclass(frozen=True)
class _Batch:
    """One llama.cpp call's questions: those not restored (`pending`), of which `scorable` fit."""

    pending: list[int]
    scorable: list[int]


def _decoder(backend: Backend, prompts: Prompts) -> Callable[[_Batch], _Logits]:
    """The llama.cpp part of a batch: each scorable question's logits, one array per request."""

    def decode(batch: _Batch) -> _Logits:
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
    for done, index in enumerate(sorted(restored), 1):
        yield QuestionScored(label, role, done, n, restored[index])


def score_baseline(
    spec: RunSpec,
    factory: BackendFactory,
    prompt_set: PromptSet,
    top_k: int,
    stored: StoredQuestions,
) -> Generator[Event, None, tuple[BaselineScores, dict[int, str]]]:
    """Score the baseline's questions not already stored; returns its scores and {index: reason} of
    skipped ones.

    The arrays are allocated once the prompts are tokenized (a cloze question's scored positions
    are only known then), or from the stored records when every question is restored.
    """
    model, questions = spec.model_set.baseline, spec.questions.questions
    n, max_options = len(questions), max(len(q.choices) for q in questions)
    restored = stored.restore_baseline(n, top_k, spec.resolved_tail_samples)
    yield from _restored_events(model.label, BASELINE, n, dict.fromkeys(restored))
    if len(restored) == n:
        return _all_restored(restored, n, max_options, top_k, spec.resolved_tail_samples)
    backend = yield from open_model(factory, model, BASELINE)
    try:
        prompts = Prompts(backend, spec.questions, prompt_set, spec.share_prefixes)
        baseline = BaselineScores.empty(
            n, max_options, top_k, prompts.rows_per_question(), spec.resolved_tail_samples
        )
        skips = _restore_into(baseline, restored, prompts, stored)
        batches = []
        for indexes in _groups(spec, prompts):
            pending = [i for i in indexes if i not in restored]
            skips.update({i: prompts.too_long[i] for i in pending if i in prompts.too_long})
            batches.append(_Batch(pending, [i for i in pending if i not in skips]))
        workers = factory.scoring_workers(spec.scoring_threads, model)
        score = _baseline_scorer(baseline, prompts)
        done = len(restored)
        for batch, scored in overlapped(batches, _decoder(backend, prompts), score, workers):
            fresh: dict[int, tuple[int, str | None]] = {
                i: (len(questions[i].choices), skips[i]) for i in batch.pending if i in skips
            }
            for index, answer, blocks, records in scored:
                baseline.record(index, answer, blocks, records)
                fresh[index] = (len(questions[index].choices), None)
            stored.record_baseline(baseline, fresh)
            for _ in batch.pending:
                done += 1
                yield QuestionScored(model.label, BASELINE, done, n, None)
    finally:
        backend.close()
    return baseline, skips


def _all_restored(
    restored: dict[int, BaseRecord | str], n: int, max_options: int, top_k: int, tail_samples: int
) -> tuple[BaselineScores, dict[int, str]]:
    """The baseline's scores and skips when the run store holds every question (no model
    loaded)."""
    counts = [0 if isinstance(r, str) else r.n_rows for _, r in sorted(restored.items())]
    baseline = BaselineScores.empty(n, max_options, top_k, counts, tail_samples)
    for index, record in restored.items():
        if isinstance(record, BaseRecord):
            record.write_into(baseline, index)
    return baseline, {i: r for i, r in restored.items() if isinstance(r, str)}


def _restore_into(
    baseline: BaselineScores,
    restored: dict[int, BaseRecord | str],
    prompts: Prompts,
    stored: StoredQuestions,
) -> dict[int, str]:
    """Write the stored records into `baseline`; returns the stored skips. A record that does not
    match this tokenization (its rows, or skipped then and not now) leaves `restored` and the
    store, to be scored again."""
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
    stored.drop(stale)
    return skips


_BaseScored = tuple[int, ChoiceScore, list[Normalized], list[BaselineRows]]


def _baseline_scorer(
    baseline: BaselineScores, prompts: Prompts
) -> Callable[[_Batch, _Logits, RowMap], list[_BaseScored]]:
    """The numpy part of a baseline batch: each question's normalized rows, answer and record."""

    def score(batch: _Batch, logits: _Logits, row_map: RowMap) -> list[_BaseScored]:
        def question(item: tuple[int, list[NDArray[np.float32]]]) -> _BaseScored:
            index, rows = item
            blocks, records = baseline.normalize(index, rows)
            return index, prompts.score(index, blocks), blocks, records

        return row_map(question, logits)

    return score


def score_quant(
    spec: RunSpec,
    factory: BackendFactory,
    model: ModelSpec,
    prompt_set: PromptSet,
    baseline: BaselineScores,
    base_skips: dict[int, str],
    stored: StoredQuestions,
    role: str = QUANT,
) -> Generator[Event, None, tuple[QuantSummary, dict[int, str]]]:
    """Score a quant's questions not already stored; returns its summary and its own skipped
    questions. `role` names the pass in its events (a quant, or the noise floor)."""
    questions = spec.questions.questions
    n = len(questions)
    restored = stored.restore_quant()
    results: dict[int, QuestionRow | str] = dict(restored)
    shown = {i: r if isinstance(r, QuestionRow) else None for i, r in restored.items()}
    yield from _restored_events(model.label, role, n, shown)
    batches = [_Batch([i for i in g if i not in results], []) for g in _groups(spec, None)]
    work: Iterable[tuple[_Batch, list[_QuantScored]]] = ((batch, []) for batch in batches)
    too_long: dict[int, str] = {}
    backend: Backend | None = None
    scoring_started = time.perf_counter()
    try:
        if any(i not in base_skips for batch in batches for i in batch.pending):
            backend = yield from open_model(factory, model, role)
            scoring_started = time.perf_counter()
            prompts = _quant_prompts(backend, spec, prompt_set, model, baseline, base_skips)
            too_long = {i: r for i, r in prompts.too_long.items() if i not in base_skips}
            unscorable = base_skips.keys() | too_long.keys()
            batches = [
                _Batch(pending, [i for i in pending if i not in unscorable])
                for pending in ([i for i in g if i not in results] for g in _groups(spec, prompts))
            ]
            workers = factory.scoring_workers(spec.scoring_threads, model)
            score = _quant_scorer(baseline, prompts)
            work = overlapped(batches, _decoder(backend, prompts), score, workers)
        done = len(restored)
        for batch, scored in work:
            fresh: dict[int, QuestionRow | str] = {
                i: too_long[i] for i in batch.pending if i in too_long
            }
            for index, quant_score, kl, accepted in scored:
                question = questions[index]
                base_score = baseline.choice_score(index, len(question.choices))
                fresh[index] = compare(index, question, base_score, quant_score, kl, accepted)
            stored.record_quant(fresh)
            results.update(fresh)
            for index in batch.pending:
                item = fresh.get(index)
                row = item if isinstance(item, QuestionRow) else None
                done += 1
                yield QuestionScored(model.label, role, done, n, row)
    finally:
        if backend is not None:
            backend.close()
    seconds = time.perf_counter() - scoring_started if backend is not None else 0.0
    return _quant_summary(model, results, restored, seconds)


def _quant_prompts(
    backend: Backend,
    spec: RunSpec,
    prompt_set: PromptSet,
    model: ModelSpec,
    baseline: BaselineScores,
    base_skips: dict[int, str],
) -> Prompts:
    """The run's prompts tokenized by the quant.

    Raises:
        BackendError: a question scored at other positions than the baseline's (another
            tokenizer).
    """
    prompts = Prompts(backend, spec.questions, prompt_set, spec.share_prefixes)
    n = len(spec.questions.questions)
    if any(prompts.n_rows(i) != baseline.n_rows(i) for i in range(n) if i not in base_skips):
        raise BackendError(
            f"{model.path}: tokenizes the prompts differently from the baseline; is it the same "
            "model?"
        )
    return prompts


_QuantScored = tuple[int, ChoiceScore, tuple[float, float], float]


def _quant_scorer(
    baseline: BaselineScores, prompts: Prompts
) -> Callable[[_Batch, _Logits, RowMap], list[_QuantScored]]:
    """The numpy part of a quant batch: each question's answer, KL and acceptance against the
    baseline."""

    def score(batch: _Batch, logits: _Logits, row_map: RowMap) -> list[_QuantScored]:
        def question(item: tuple[int, list[NDArray[np.float32]]]) -> _QuantScored:
            index, rows = item
            blocks = baseline.quant_normalize(index, rows)
            return (
                index,
                prompts.score(index, blocks),
                baseline.kl_to(index, blocks),
                baseline.acceptance_to(index, blocks),
            )

        return row_map(question, logits)

    return score


def _quant_summary(
    model: ModelSpec,
    results: dict[int, QuestionRow | str],
    restored: dict[int, QuestionRow | str],
    seconds: float,
) -> tuple[QuantSummary, dict[int, str]]:
    """The quant's summary over every row and its skips; the speed is that of the questions
    scored in this process.

    Raises:
        BackendError: no question fits n_ctx.
    """
    rows = [item for _, item in sorted(results.items()) if isinstance(item, QuestionRow)]
    if not rows:
        raise BackendError(f"{model.path}: no prompt fits n_ctx; raise n_ctx in models.toml")
    skips = {index: item for index, item in results.items() if isinstance(item, str)}
    summary = summarize_quant(model.label, str(model.path), rows, seconds)
    if restored:
        n_scored = sum(isinstance(results[i], QuestionRow) and i not in restored for i in results)
        speed = n_scored / seconds if seconds > 0 else float("nan")
        summary = dataclasses.replace(summary, questions_per_second=speed)
    return summary, skips
