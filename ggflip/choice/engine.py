"""The comparison engine: baseline once (or from the cache), then each quant, as a stream of events.

`run_comparison` is a generator of `ggflip.choice.events` values. Front ends iterate it; closing the
generator early (Ctrl-C, a cancel button) stops between batches of questions and frees the
loaded model. Every check that can fail on user input (files, vocabularies, prompt
lengths) runs before the first model is scored.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from ggflip.backends.base import BackendFactory, ModelProbe
from ggflip.choice.baseline import BaselineScores
from ggflip.choice.cache import BaselineCache
from ggflip.choice.events import (
    FLOOR,
    BaselineFinished,
    Event,
    FloorFinished,
    QuantFinished,
    RunFinished,
    RunStarted,
    floor_label,
)
from ggflip.choice.loop import score_baseline, score_quant
from ggflip.choice.report import (
    BaselineSummary,
    QuantSummary,
    Report,
    SkippedQuestion,
)
from ggflip.choice.resume import computed_with, key_parts, model_key
from ggflip.choice.row_store import StoredQuestions, StoreSession
from ggflip.choice.spec import RunSpec, floor_batch_size, kv_layout
from ggflip.choice.verdicts import with_equivalence, with_verdict
from ggflip.config.labels import settings_diff
from ggflip.config.models_toml import ModelSpec
from ggflip.errors import BackendError, GgflipError, ReadOnlyCacheError
from ggflip.runs.events import BaselineFromCache
from ggflip.runs.vocab import check_vocabularies
from ggflip.scoring import stats
from ggflip.store.keys import cache_key
from ggflip.store.locks import CacheLock
from ggflip.tasks.prompts import PromptSet
from ggflip.tasks.questions import QuestionSet

log = logging.getLogger("ggflip.choice.engine")


def run_comparison(spec: RunSpec, factory: BackendFactory) -> Generator[Event, None, None]:
    """Score the baseline (or read it from the cache), then each quant, yielding events.

    With `spec.run_store`, every batch of scored questions is stored as it is scored and a
    re-run restores them (`Resumed`) instead of scoring them again. With `spec.cache_dir`,
    the run holds a lock there, so a second process running the same comparison waits.

    Raises:
        ModelFileError, VocabMismatchError, BackendError, CacheError, DiskFullError: before
        scoring for bad inputs, or when llama.cpp fails mid-run.
    """
    spec = kv_layout(spec)
    model_set = spec.model_set
    probes = [factory.probe(model) for model in model_set.models]
    check_vocabularies(model_set, probes)
    parts = key_parts(spec, probes[0], factory)
    key = cache_key(parts)
    model_keys = [model_key(m, p, factory) for m, p in zip(model_set.models, probes)]
    lock = (
        CacheLock(spec.cache_dir, f"run-{key}", "running this same comparison")
        if spec.cache_dir
        else None
    )
    session: StoreSession | None = None
    read_only = False
    if lock:
        try:
            lock.acquire()
        except ReadOnlyCacheError:
            lock, read_only = None, True
    try:
        if read_only:
            session = _read_finished_results(spec, key, model_keys)
        else:
            session = spec.run_store.open() if spec.run_store else None
        stored = [
            StoredQuestions(session, key, m_key, m.label)
            for m, m_key in zip(model_set.models, model_keys)
        ]
        if spec.floor:
            floor_model = floor_key(model_keys[0], spec.batch_size)
            label = floor_label(model_set.baseline.label)
            stored.append(StoredQuestions(session, key, floor_model, label))
        if not spec.resume:
            for model_stored in stored:
                model_stored.forget()
        facts = [file_facts(p) for p in probes]
        facts[0] = {**facts[0], "computed_with": computed_with(spec, factory)}
        for index, quant in enumerate(model_set.quants, start=1):
            facts[index]["settings"] = settings_diff(model_set.baseline.llama, quant.llama)
        yield from _run(spec, factory, parts, key, stored, facts)
    finally:
        if session:
            session.close()
        if lock:
            lock.release()


def floor_key(baseline_key: str, batch_size: int) -> str:
    """The noise floor's model key in the run store: the baseline's, under the floor's grouping.

    Stored under the baseline cache key, the floor is reused by every run of that baseline on
    those questions, whatever the quants.
    """
    return f"{baseline_key}-floor-b{floor_batch_size(batch_size)}"


def floor_method(spec: RunSpec) -> str:
    """What the noise floor's second baseline pass changes, in words for the report."""
    return (
        f"baseline scored again with {floor_batch_size(spec.batch_size)} question(s) per "
        f"llama.cpp call instead of {spec.batch_size}: the same model, settings and prompts, "
        "other decode batches"
    )


def _read_finished_results(
    spec: RunSpec, key: str, model_keys: Sequence[str]
) -> StoreSession | None:
    """A cache directory that cannot be written still serves a run it holds entirely: open its
    run store for reading (no lock is needed to read finished results), or refuse.

    Raises:
        ReadOnlyCacheError: some result of this run is missing there, so it would be scored and
            could not be stored.
    """
    assert spec.cache_dir is not None
    n = len(spec.questions.questions)
    counts = [0] * len(model_keys)
    session = None
    if spec.run_store is not None and spec.run_store.path.exists():
        session = spec.run_store.open_read_only()
        counts = [session.count(key, m_key) for m_key in model_keys]
    if BaselineCache(spec.cache_dir).contains(key):
        counts[0] = n
    if not spec.resume or any(count < n for count in counts):
        if session:
            session.close()
        raise ReadOnlyCacheError(
            f"{spec.cache_dir}: the cache directory is read-only and does not hold every result "
            "of this run (the rest could not be stored); pass --no-cache or a writable --cache-dir"
        )
    log.warning(
        "%s: the cache directory is read-only; reading the finished run from it", spec.cache_dir
    )
    return session


def file_facts(probe: ModelProbe) -> dict[str, Any]:
    """The model-file facts a report carries next to each summary."""
    return {
        "bits_per_weight": probe.bits_per_weight,
        "file_size": probe.file_size,
        "n_params": probe.n_params,
        **probe.memory_facts(),
        "imatrix": dict(probe.imatrix),
    }


def _run(
    spec: RunSpec,
    factory: BackendFactory,
    parts: dict[str, object],
    key: str,
    stored: Sequence[StoredQuestions],
    facts: Sequence[dict[str, Any]],
) -> Iterator[Event]:
    """The run's events after its setup: the baseline, the floor, each quant, the report."""
    model_set, questions = spec.model_set, spec.questions
    yield RunStarted(
        model_set.name, tuple(m.label for m in model_set.models), len(questions.questions)
    )
    prompt_set = spec.prompt_set
    n = len(questions.questions)
    baseline, base_skips, baseline_seconds, from_cache = yield from _baseline_scores(
        spec, factory, prompt_set, parts, key, stored[0]
    )
    skipped = _skipped(questions, model_set.baseline, base_skips)
    if len(base_skips) == n:
        raise BackendError(
            f"{model_set.baseline.path}: no prompt fits n_ctx; raise n_ctx in models.toml"
        )
    baseline_summary = dataclasses.replace(
        _baseline_summary(
            model_set.baseline, questions, baseline, base_skips, baseline_seconds, from_cache
        ),
        **facts[0],
    )
    yield BaselineFinished(baseline_summary, tuple(skipped))
    floor: QuantSummary | None = None
    if spec.floor:
        floor = yield from _floor(
            spec, factory, prompt_set, (baseline, base_skips), stored[-1], facts[0]
        )
    quant_summaries: list[QuantSummary] = []
    for quant, quant_stored, quant_facts in zip(model_set.quants, stored[1:], facts[1:]):
        summary, quant_skips = yield from score_quant(
            spec, factory, quant, prompt_set, baseline, base_skips, quant_stored
        )
        summary = with_equivalence(dataclasses.replace(summary, **quant_facts), spec.margins)
        if floor is not None:
            summary = with_verdict(summary, floor)
        quant_summaries.append(summary)
        quant_skipped = _skipped(questions, quant, quant_skips)
        skipped += quant_skipped
        yield QuantFinished(summary, tuple(quant_skipped))
    yield RunFinished(_report(spec, baseline_summary, quant_summaries, True, skipped, floor))


def _baseline_scores(
    spec: RunSpec,
    factory: BackendFactory,
    prompt_set: PromptSet,
    parts: dict[str, object],
    key: str,
    stored: StoredQuestions,
) -> Generator[Event, None, tuple[BaselineScores, dict[int, str], float, bool]]:
    """The baseline's scores and skips from the cache, or scored (and then cached); returns them
    with the seconds scoring took and whether they came from the cache."""
    cache = BaselineCache(spec.cache_dir) if spec.cache_dir else None
    model_set, n = spec.model_set, len(spec.questions.questions)
    top_k = int(parts["top_k"])  # type: ignore[call-overload]
    cached = cache.load(key, n, top_k, spec.resolved_tail_samples) if cache else None
    if cached is not None:
        yield BaselineFromCache(model_set.baseline.label, str(cache.root if cache else ""))
        return cached[0], cached[1], 0.0, True
    started = time.perf_counter()
    baseline, base_skips = yield from score_baseline(spec, factory, prompt_set, top_k, stored)
    seconds = time.perf_counter() - started
    if cache:
        meta = {"key": parts, "set": model_set.name, "baseline": str(model_set.baseline.path)}
        cache.save(key, baseline, meta, base_skips)
        try:
            stored.forget()  # the baseline cache holds it now
        except GgflipError as exc:
            log.warning(
                "could not drop the baseline's stored rows (%s); they are only redundant", exc
            )
    return baseline, base_skips, seconds, False


def _floor(
    spec: RunSpec,
    factory: BackendFactory,
    prompt_set: PromptSet,
    scored: tuple[BaselineScores, dict[int, str]],
    stored: StoredQuestions,
    baseline_facts: dict[str, Any],
) -> Generator[Event, None, QuantSummary]:
    """The noise floor: the baseline scored again as a quant under the floor's batch size."""
    floor_model = dataclasses.replace(
        spec.model_set.baseline, label=floor_label(spec.model_set.baseline.label)
    )
    floor_spec = dataclasses.replace(spec, batch_size=floor_batch_size(spec.batch_size))
    baseline, base_skips = scored
    floor, _ = yield from score_quant(
        floor_spec, factory, floor_model, prompt_set, baseline, base_skips, stored, FLOOR
    )
    floor_facts = {k: v for k, v in baseline_facts.items() if k != "computed_with"}
    floor = with_equivalence(dataclasses.replace(floor, **floor_facts), spec.margins)
    yield FloorFinished(floor, floor_method(spec))
    return floor


def _skipped(
    questions: QuestionSet, model: ModelSpec, skips: dict[int, str]
) -> list[SkippedQuestion]:
    for index, reason in sorted(skips.items()):
        log.warning(
            "question %s skipped for %s: %s", questions.questions[index].id, model.label, reason
        )
    return [
        SkippedQuestion(i, questions.questions[i].id, model.label, r)
        for i, r in sorted(skips.items())
    ]


def partial_report(
    spec: RunSpec,
    baseline: BaselineSummary | None,
    quants: Sequence[QuantSummary],
    skipped: Sequence[SkippedQuestion] = (),
    floor: QuantSummary | None = None,
) -> Report:
    """A report of what finished before a run stopped early."""
    return _report(spec, baseline, quants, False, skipped, floor)


def _report(
    spec: RunSpec,
    baseline: BaselineSummary | None,
    quants: Sequence[QuantSummary],
    complete: bool,
    skipped: Sequence[SkippedQuestion] = (),
    floor: QuantSummary | None = None,
) -> Report:
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
        skipped_questions=tuple(skipped),
        mode=prompt_set.mode,
        answer_rule=prompt_set.answer_rule,
        n_shots=prompt_set.n_shots,
        floor=floor,
        floor_method=floor_method(spec) if floor is not None else None,
        selection=spec.questions.selection,
        calibration=spec.calibration,
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
    correct = sum(int(scores.choice_score(i, len(q.choices)).choice == q.gold) for i, q in scored)
    return BaselineSummary(
        label=model.label,
        path=str(model.path),
        accuracy=correct / len(scored),
        accuracy_ci=stats.wilson_interval(correct, len(scored)),
        seconds=seconds,
        from_cache=from_cache,
    )
