"""Generation mode: the baseline generates greedily (or is read from the cache), then each quant.

`run_generation` is a generator of `ggflip.generate.events` (plus the model lifecycle events
of `ggflip.runs.events`). Per round of turns, the units that fit are cut into fixed batches
of `batch_size`, in unit order; every model generates the same batches in the same order
(`Backend.generate`: one decode per step for the batch's live sequences), so the baseline
against itself gives the same texts. After each batch every unit is teacher-forced: one
prefill of the baseline's prompt and generation with logits at every generated position
(`Backend.logits`, the shared few-shot prefix reused). The baseline keeps its compact record
of those positions (`baseline`); a quant is compared against it (`quant`, `compare`).

Each batch is one transaction of the run store, so a killed run resumes where it stopped; a
batch only partly stored is generated again whole, to keep the batches identical. A unit whose
prompt leaves fewer than `max_new_tokens` of the baseline's n_ctx is skipped for every model
(with the later turns of its question). Under `chat` every model is asked through the
baseline's template; a quant whose own template differs is named (`ChatTemplateDiffers`, a
warning, and the report's `chat_template_differs`), since it would be asked otherwise alone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Generator, Sequence

from ggflip.backends.base import BackendFactory, ModelProbe
from ggflip.config.labels import settings_diff
from ggflip.generate.baseline import baseline_summary, generate_baseline
from ggflip.generate.events import (
    ChatTemplateDiffers,
    GenBaselineFinished,
    GenFinished,
    GenQuantFinished,
    GenStarted,
)
from ggflip.generate.plan import StoredUnits, answer_rules, has_gold, key_parts, model_key
from ggflip.generate.quant import compare_quant
from ggflip.generate.records import GenerationCache
from ggflip.generate.report import GenBaseline, GenQuant, GenReport, SkippedTurn
from ggflip.generate.spec import GenSpec, kv_layout
from ggflip.runs.events import BaselineFromCache
from ggflip.runs.vocab import check_vocabularies
from ggflip.store.keys import cache_key

log = logging.getLogger("ggflip")


def template_differences(spec: GenSpec, probes: Sequence[ModelProbe]) -> list[ChatTemplateDiffers]:
    """Under `chat`, each quant whose GGUF chat template is not the baseline's (from headers)."""
    if not spec.chat:
        return []
    base = probes[0].chat_template_digest
    return [
        ChatTemplateDiffers(model.label, str(model.path))
        for model, probe in zip(spec.model_set.quants, probes[1:])
        if probe.chat_template_digest != base
    ]


def _warned(differs: list[ChatTemplateDiffers]) -> Generator[object, None, None]:
    """Each quant whose chat template differs from the baseline's: logged, then yielded."""
    for event in differs:
        log.warning(
            "%s (%s): its chat template differs from the baseline's; every model is asked "
            "through the baseline's template",
            event.label,
            event.path,
        )
        yield event


def run_generation(spec: GenSpec, factory: BackendFactory) -> Generator[object, None, None]:
    """Generate with the baseline (or read it from the cache), then each quant, yielding events.

    Raises:
        ModelFileError, VocabMismatchError, DataError, BackendError, CacheError, DiskFullError.
    """
    spec = kv_layout(spec)
    model_set = spec.model_set
    probes = [factory.probe(model) for model in model_set.models]
    check_vocabularies(model_set, probes)
    key = cache_key(key_parts(spec, probes[0], factory))
    units = spec.units()
    yield GenStarted(model_set.name, tuple(m.label for m in model_set.models), len(units))
    differs = template_differences(spec, probes)
    yield from _warned(differs)
    session = spec.run_store.open() if spec.run_store else None
    try:
        stored = [
            StoredUnits(session, key, model_key(m, p, factory), m.label)
            for m, p in zip(model_set.models, probes)
        ]
        if not spec.resume:
            for rows in stored:
                rows.forget()
        cache = GenerationCache(spec.cache_dir) if spec.cache_dir else None
        cached = cache.load(key) if cache else None
        started = time.perf_counter()
        if cached is not None:
            yield BaselineFromCache(model_set.baseline.label, str(cache.folder if cache else ""))
            base_units, skips = cached
        else:
            base_units, skips = yield from generate_baseline(spec, factory, units, stored[0])
            if cache:
                cache.save(key, base_units, skips)
                stored[0].forget()
        baseline = baseline_summary(
            spec, base_units, units, time.perf_counter() - started, cached is not None
        )
        baseline = dataclasses.replace(baseline, **probes[0].memory_facts())
        yield GenBaselineFinished(baseline)
        quants: list[GenQuant] = []
        for model, rows, probe in zip(model_set.quants, stored[1:], probes[1:]):
            summary = yield from compare_quant(spec, factory, model, units, base_units, skips, rows)
            diff = settings_diff(model_set.baseline.llama, model.llama)
            summary = dataclasses.replace(
                summary, settings=diff, imatrix=dict(probe.imatrix), **probe.memory_facts()
            )
            quants.append(summary)
            yield GenQuantFinished(summary)
        skipped = _skipped(spec, units, skips)
        yield GenFinished(
            report(spec, baseline, quants, skipped, True, tuple(d.label for d in differs))
        )
    finally:
        if session:
            session.close()


def report(
    spec: GenSpec,
    baseline: GenBaseline | None,
    quants: Sequence[GenQuant],
    skipped: Sequence[SkippedTurn] = (),
    complete: bool = False,
    template_differs: Sequence[str] = (),
) -> GenReport:
    """The run's report (`complete=False`: what finished before it stopped)."""
    return GenReport(
        set=spec.model_set.name,
        task=spec.task.name,
        prompt_version=spec.task.prompt_version(len(spec.shots), spec.chat),
        source=spec.source,
        selection=spec.selection,
        chat=spec.chat,
        n_questions=len(spec.items),
        n_turns=len(spec.units()),
        max_new_tokens=spec.new_tokens,
        cache_top_k=spec.top_k,
        answer_rule=answer_rules(spec)[0] if has_gold(spec) else None,
        baseline=baseline,
        quants=tuple(quants),
        skipped=tuple(skipped),
        complete=complete,
        chat_template_differs=tuple(template_differs),
    )


def _skipped(
    spec: GenSpec, units: list[tuple[int, int]], skips: dict[int, str]
) -> list[SkippedTurn]:
    return [
        SkippedTurn(u, spec.items[units[u][0]].id, units[u][1], reason)
        for u, reason in sorted(skips.items())
    ]
