"""Generation mode: the baseline generates greedily (or is read from the cache), then each quant.

`run_generation` is a generator of `ggflip.generate.events` (plus the model lifecycle events
of `ggflip.runs.events`). Per round of turns, the units that fit are cut into fixed batches
of `batch_size`, in unit order; every model generates the same batches in the same order
(`Backend.generate`: one decode per step for the batch's live sequences), so the baseline
against itself gives the same texts. After each batch every unit is teacher-forced: one
prefill of the baseline's prompt and generation with logits at every generated position
(`Backend.logits`, the shared few-shot prefix reused). The baseline keeps its compact record
of those positions; a quant is compared against it (`ggflip.generate.compare`).

Each batch is one transaction of the run store, so a killed run resumes where it stopped; a
batch only partly stored is generated again whole, to keep the batches identical. A unit whose
prompt leaves fewer than `max_new_tokens` of the baseline's n_ctx is skipped for every model
(with the later turns of its question).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from ggflip.backends.base import Backend, BackendFactory, GenerateRequest, ModelProbe, ScoreRequest
from ggflip.backends.numerics import baseline_numerics, numeric_settings
from ggflip.config.models_toml import ModelSpec
from ggflip.errors import BackendError, DataError
from ggflip.generate.compare import TurnRow, compare_turn
from ggflip.generate.events import (
    GenBaselineFinished,
    GenFinished,
    GenQuantFinished,
    GenStarted,
    TurnGenerated,
    TurnsRestored,
)
from ggflip.generate.extract import extract, gold_answer
from ggflip.generate.records import BaseUnit, GenerationCache, decode_unit, encode_unit
from ggflip.generate.report import GenBaseline, GenQuant, GenReport, SkippedTurn, summarize
from ggflip.generate.spec import GenSpec, conversation, plain_prompt, render_chat
from ggflip.runs.events import BASELINE, QUANT, BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.runs.vocab import check_vocabularies
from ggflip.scoring import stats
from ggflip.scoring.topk import baseline_rows, normalize
from ggflip.store.keys import cache_key
from ggflip.store.rundb import BASE, ROW, SKIP, StoreSession
from ggflip.tasks.generation import items_digest

SAMPLING_SEED = 20250705
MIN_SHARED_PREFIX = 32
BLOCK_ROWS = 32


def key_parts(spec: GenSpec, base: ModelProbe, build: Mapping[str, Any]) -> dict[str, object]:
    """What the baseline's generations depend on: the cache key and the run store's run key.

    The llama settings and llama.cpp build come from `baseline_numerics`, as in the other modes.
    """
    n_shots = len(spec.shots)
    return {
        "mode": "generate",
        "model": base.identity,
        "vocab": base.vocab_fingerprint,
        **baseline_numerics(spec.model_set.baseline.llama, build),
        "prompt": spec.task.prompt_version(n_shots, spec.chat),
        "items": items_digest(spec.items),
        "shots": items_digest(spec.shots),
        "system": spec.system,
        "stop": list(spec.task.stop),
        "max_new_tokens": spec.new_tokens,
        "batch_size": spec.batch_size,
        "top_k": min(spec.top_k, base.n_vocab),
        "tail_samples": spec.tail_samples,
    }


def model_key(model: ModelSpec, probe: ModelProbe) -> str:
    """A model's identity in the run store: label, file identity and the llama settings that can
    change its numbers."""
    blob = json.dumps([model.label, probe.identity, numeric_settings(model.llama)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class _Rows:
    """One model's stored units in one run (no-ops without a store session)."""

    def __init__(self, session: StoreSession | None, run: str, model: str, label: str) -> None:
        self.session, self.run, self.model, self.label = session, run, model, label

    def restore(self) -> dict[int, tuple[str, bytes]]:
        return self.session.restore(self.run, self.model, self.label) if self.session else {}

    def record(self, items: dict[int, tuple[str, bytes]]) -> None:
        if self.session:
            self.session.record(self.run, self.model, self.label, items)

    def forget(self) -> None:
        if self.session:
            self.session.forget(self.run, self.model)


def run_generation(spec: GenSpec, factory: BackendFactory) -> Generator[object, None, None]:
    """Generate with the baseline (or read it from the cache), then each quant, yielding events.

    Raises:
        ModelFileError, VocabMismatchError, DataError, BackendError, CacheError, DiskFullError.
    """
    model_set = spec.model_set
    probes = [factory.probe(model) for model in model_set.models]
    check_vocabularies(model_set, probes)
    parts = key_parts(spec, probes[0], factory.build_info())
    key = cache_key(parts)
    units = spec.units()
    yield GenStarted(model_set.name, tuple(m.label for m in model_set.models), len(units))
    session = spec.run_store.open() if spec.run_store else None
    try:
        stored = [
            _Rows(session, key, model_key(m, p), m.label) for m, p in zip(model_set.models, probes)
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
            base_units, skips = yield from _baseline(spec, factory, units, stored[0])
            if cache:
                cache.save(key, base_units, skips)
                stored[0].forget()
        baseline = _baseline_summary(
            spec, base_units, skips, units, time.perf_counter() - started, cached is not None
        )
        yield GenBaselineFinished(baseline)
        quants: list[GenQuant] = []
        for model, rows in zip(model_set.quants, stored[1:]):
            summary = yield from _quant(spec, factory, model, units, base_units, skips, rows)
            quants.append(summary)
            yield GenQuantFinished(summary)
        yield GenFinished(report(spec, baseline, quants, _skipped(spec, units, skips), True))
    finally:
        if session:
            session.close()


def report(
    spec: GenSpec,
    baseline: GenBaseline | None,
    quants: Sequence[GenQuant],
    skipped: Sequence[SkippedTurn] = (),
    complete: bool = False,
) -> GenReport:
    """The run's report (`complete=False`: what finished before it stopped)."""
    return GenReport(
        set=spec.model_set.name,
        task=spec.task.name,
        prompt_version=spec.task.prompt_version(len(spec.shots), spec.chat),
        source=spec.source,
        chat=spec.chat,
        n_questions=len(spec.items),
        n_turns=len(spec.units()),
        max_new_tokens=spec.new_tokens,
        cache_top_k=spec.top_k,
        answer_rule=_rules(spec)[0] if _has_gold(spec) else None,
        baseline=baseline,
        quants=tuple(quants),
        skipped=tuple(skipped),
        complete=complete,
    )


def _rules(spec: GenSpec) -> tuple[str, ...]:
    task = spec.task
    return ((task.answer_rule,) if task.answer_rule else ()) + task.other_rules


def _has_gold(spec: GenSpec) -> bool:
    return bool(_rules(spec)) and any(item.answer is not None for item in spec.items)


def _skipped(
    spec: GenSpec, units: list[tuple[int, int]], skips: dict[int, str]
) -> list[SkippedTurn]:
    return [
        SkippedTurn(u, spec.items[units[u][0]].id, units[u][1], reason)
        for u, reason in sorted(skips.items())
    ]


def _batches(spec: GenSpec, units: list[tuple[int, int]], skips: dict[int, str]) -> list[list[int]]:
    """The fixed batches: per round, the units that are not skipped, cut in unit order."""
    batches: list[list[int]] = []
    for turn in range(spec.n_turns):
        live = [u for u, (_, t) in enumerate(units) if t == turn and u not in skips]
        batches += [live[i : i + spec.batch_size] for i in range(0, len(live), spec.batch_size)]
    return batches


def _open(factory: BackendFactory, model: ModelSpec, role: str) -> Generator[object, None, Backend]:
    yield ModelLoading(model.label, role, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    yield ModelLoaded(model.label, role, time.perf_counter() - started)
    return backend


def _forced_logits(backend: Backend, prompt: tuple[int, ...], tokens: tuple[int, ...], shared: int):  # type: ignore[no-untyped-def]
    """Logits at every generated position of prompt + tokens, in one prefill."""
    positions = tuple(range(len(prompt) - 1, len(prompt) + len(tokens) - 1))
    return backend.logits([ScoreRequest(prompt + tokens, positions, shared)])[0]


def _prompt(
    spec: GenSpec, backend: Backend, template: str | None, unit: tuple[int, int], answers: list[str]
) -> tuple[tuple[int, ...], int]:
    """The prompt tokens of a unit and how many of them are the shared few-shot prefix."""
    item = spec.items[unit[0]]
    if template is not None:
        messages = conversation(spec, item, unit[1], answers)
        text = render_chat(
            template,
            messages,
            backend.special_token("bos"),
            backend.special_token("eos"),
            str(spec.model_set.baseline.path),
        )
        bos = backend.special_token("bos")
        # The template writes BOS itself; tokenizing it again would double it.
        tokens = backend.tokenize(text.removeprefix(bos) if bos else text, add_bos=True)
        return tuple(tokens), 0
    text, prefix = plain_prompt(spec, item, unit[1], answers)
    tokens = backend.tokenize(text, add_bos=True)
    if not prefix:
        return tuple(tokens), 0
    prefix_tokens = backend.tokenize(prefix, add_bos=True)
    shared = 0
    for a, b in zip(prefix_tokens, tokens):
        if a != b:
            break
        shared += 1
    return tuple(tokens), shared if shared >= MIN_SHARED_PREFIX else 0


def _chat_template(spec: GenSpec, backend: Backend) -> str | None:
    if not spec.chat:
        return None
    template = backend.chat_template()
    if template is None:
        raise DataError(
            f"{spec.model_set.baseline.path}: has no tokenizer.chat_template; run without --chat"
        )
    return template


def _baseline(
    spec: GenSpec, factory: BackendFactory, units: list[tuple[int, int]], stored: _Rows
) -> Generator[object, None, tuple[dict[int, BaseUnit], dict[int, str]]]:
    model = spec.model_set.baseline
    base_units: dict[int, BaseUnit] = {}
    skips: dict[int, str] = {}
    for index, (kind, payload) in stored.restore().items():
        try:
            if kind == SKIP:
                skips[index] = payload.decode()
            elif kind == BASE and 0 <= index < len(units):
                base_units[index] = decode_unit(payload)
        except (ValueError, UnicodeDecodeError):
            continue
    if base_units or skips:
        yield TurnsRestored(model.label, BASELINE, len(base_units) + len(skips), len(units))
    if len(base_units) + len(skips) == len(units):
        return base_units, skips
    backend = yield from _open(factory, model, BASELINE)
    try:
        template = _chat_template(spec, backend)
        top_k = min(spec.top_k, backend.n_vocab)
        done = 0
        for turn in range(spec.n_turns):
            prompts: dict[int, tuple[tuple[int, ...], int]] = {}
            for u, (item, t) in enumerate(units):
                if t != turn or u in skips or u in base_units:
                    continue
                earlier = [units.index((item, e)) for e in range(t)]
                if any(e in skips for e in earlier):
                    skips[u] = "an earlier turn of this question was skipped"
                    stored.record({u: (SKIP, skips[u].encode())})
                    continue
                answers = [base_units[e].text for e in earlier]
                tokens, shared = _prompt(spec, backend, template, (item, t), answers)
                if len(tokens) + spec.new_tokens > backend.n_ctx:
                    skips[u] = (
                        f"prompt of {len(tokens)} tokens leaves fewer than {spec.new_tokens} of "
                        f"n_ctx={backend.n_ctx} (raise n_ctx in models.toml)"
                    )
                    stored.record({u: (SKIP, skips[u].encode())})
                    continue
                prompts[u] = (tokens, shared)
            for batch in _batches(spec, units, skips):
                if units[batch[0]][1] != turn:
                    continue
                if all(u in base_units for u in batch):
                    done += len(batch)
                    continue
                for u in batch:
                    if u not in prompts:  # restored, but its batch was not: generate it again
                        prompts[u] = (base_units[u].prompt, base_units[u].shared_prefix)
                requests = [
                    GenerateRequest(prompts[u][0], spec.new_tokens, spec.task.stop, prompts[u][1])
                    for u in batch
                ]
                fresh: dict[int, tuple[str, bytes]] = {}
                for u, generation in zip(batch, backend.generate(requests)):
                    prompt, shared = prompts[u]
                    logits = _forced_logits(backend, prompt, generation.tokens, shared)
                    rng = np.random.default_rng([u, SAMPLING_SEED])
                    norm_rows, targets = [], []
                    ids = np.asarray(generation.tokens, dtype=np.int64)
                    for start in range(0, len(ids), BLOCK_ROWS):
                        norm = normalize(logits[start : start + BLOCK_ROWS])
                        norm_rows.append(baseline_rows(norm, top_k, spec.tail_samples, rng))
                        targets.append(norm.logprobs_at(ids[start : start + BLOCK_ROWS]))
                    del logits
                    rows = type(norm_rows[0])(
                        *(
                            np.concatenate([getattr(r, name) for r in norm_rows])
                            for name in type(norm_rows[0]).__dataclass_fields__
                        )
                    )
                    unit = BaseUnit(
                        prompt,
                        shared,
                        generation.tokens,
                        generation.text,
                        generation.finish,
                        generation.margins,
                        rows,
                        np.concatenate(targets),
                    )
                    base_units[u] = unit
                    fresh[u] = (BASE, encode_unit(unit))
                stored.record(fresh)
                for _ in batch:
                    done += 1
                    yield TurnGenerated(model.label, BASELINE, done, len(units), None)
    finally:
        backend.close()
    if not base_units:
        raise BackendError(f"{model.path}: no prompt fits n_ctx; raise n_ctx in models.toml")
    return base_units, skips


def _quant(
    spec: GenSpec,
    factory: BackendFactory,
    model: ModelSpec,
    units: list[tuple[int, int]],
    base_units: dict[int, BaseUnit],
    skips: dict[int, str],
    stored: _Rows,
) -> Generator[object, None, GenQuant]:
    rows: dict[int, TurnRow] = {}
    for index, (kind, payload) in stored.restore().items():
        if kind == ROW and index in base_units:
            try:
                rows[index] = _decode_row(payload)
            except (ValueError, TypeError, KeyError):
                continue
    if rows:
        yield TurnsRestored(model.label, QUANT, len(rows), len(base_units))
    backend: Backend | None = None
    seconds = 0.0
    rules = _rules(spec)
    try:
        done = 0
        for batch in _batches(spec, units, skips):
            if all(u in rows for u in batch):
                done += len(batch)
                continue
            if backend is None:
                backend = yield from _open(factory, model, QUANT)
            started = time.perf_counter()
            requests = [
                GenerateRequest(
                    base_units[u].prompt,
                    spec.new_tokens,
                    spec.task.stop,
                    base_units[u].shared_prefix,
                )
                for u in batch
            ]
            fresh: dict[int, tuple[str, bytes]] = {}
            for u, generation in zip(batch, backend.generate(requests)):
                unit = base_units[u]
                logits = _forced_logits(backend, unit.prompt, unit.tokens, unit.shared_prefix)
                item = spec.items[units[u][0]]
                rows[u] = compare_turn(
                    u, item.id, units[u][1], item.answer, rules, unit, generation, logits
                )
                fresh[u] = (ROW, json.dumps(dataclasses.asdict(rows[u])).encode())
            stored.record(fresh)
            seconds += time.perf_counter() - started
            for u in batch:
                done += 1
                yield TurnGenerated(model.label, QUANT, done, len(base_units), rows[u])
    finally:
        if backend is not None:
            backend.close()
    ordered = [rows[u] for u in sorted(rows)]
    rule = rules[0] if _has_gold(spec) else None
    return summarize(model.label, str(model.path), ordered, rule, seconds)


def _decode_row(payload: bytes) -> TurnRow:
    fields = json.loads(payload)
    fields["answers"] = {k: (v[0], v[1]) for k, v in fields["answers"].items()}
    fields["token_kl"] = tuple(float(v) for v in fields["token_kl"])
    return TurnRow(**fields)


def _baseline_summary(
    spec: GenSpec,
    base_units: dict[int, BaseUnit],
    skips: dict[int, str],
    units: list[tuple[int, int]],
    seconds: float,
    from_cache: bool,
) -> GenBaseline:
    model = spec.model_set.baseline
    accuracy, interval = None, None
    if _has_gold(spec):
        rule = _rules(spec)[0]
        marks = []
        for u, unit in base_units.items():
            gold = spec.items[units[u][0]].answer
            if gold is not None:
                marks.append(extract(rule, unit.text, gold) == gold_answer(rule, gold))
        if marks:
            accuracy = sum(marks) / len(marks)
            interval = stats.wilson_interval(sum(marks), len(marks))
    return GenBaseline(
        label=model.label,
        path=str(model.path),
        seconds=0.0 if from_cache else seconds,
        from_cache=from_cache,
        n_tokens=sum(len(u.tokens) for u in base_units.values()),
        truncated=sum(u.finish == "length" for u in base_units.values()),
        accuracy=accuracy,
        accuracy_ci=interval,
    )
