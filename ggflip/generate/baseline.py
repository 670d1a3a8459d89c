"""The baseline's side of a generation run: its prompts, greedy generations and compact records.

Per round of turns every unit's prompt is rendered (a later turn after the baseline's own
earlier answers) and tokenized; a prompt that leaves fewer than `max_new_tokens` of n_ctx is
skipped, with the later turns of its question. Each fixed batch generates together, then every
unit is teacher-forced on its own text (one prefill, logits at each generated position) and
kept as a `BaseUnit`: the top K, the tail mass and tail draws per generated token. Each batch
is one transaction of the run store; a batch only partly stored is generated again whole.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory, GenerateRequest, Generation
from ggflip.errors import BackendError, DataError
from ggflip.generate.events import TurnGenerated, TurnsRestored
from ggflip.generate.extract import extract, gold_answer
from ggflip.generate.plan import (
    StoredUnits,
    answer_rules,
    batches,
    forced_logits,
    has_gold,
)
from ggflip.generate.records import BaseUnit, decode_unit, encode_unit
from ggflip.generate.report import GenBaseline
from ggflip.generate.spec import GenSpec, conversation, plain_prompt, render_chat
from ggflip.runs.events import BASELINE
from ggflip.runs.loading import open_model
from ggflip.runs.pipeline import RowMap, overlapped
from ggflip.scoring import stats
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import baseline_normalize
from ggflip.store.rowdb import BASE, SKIP

SAMPLING_SEED = 20250705
MIN_SHARED_PREFIX = 32
BLOCK_ROWS = 32

Units = list[tuple[int, int]]


def prompt_tokens(
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
        return chat_tokens(backend, text), 0
    text, prefix = plain_prompt(spec, item, unit[1], answers)
    tokens = backend.tokenize(text, add_bos=True, special=False)
    if not prefix:
        return tuple(tokens), 0
    prefix_tokens = backend.tokenize(prefix, add_bos=True, special=False)
    shared = 0
    for a, b in zip(prefix_tokens, tokens):
        if a != b:
            break
        shared += 1
    return tuple(tokens), shared if shared >= MIN_SHARED_PREFIX else 0


def chat_tokens(backend: Backend, text: str) -> tuple[int, ...]:
    """A rendered chat prompt's tokens as llama.cpp's server and llama-cli read it: special
    tokens parsed (the template's `<start_of_turn>` is one id, and so is that text inside a
    message), BOS once.

    llama.cpp strips a leading BOS text off the rendered prompt when the model adds BOS itself
    (`common_chat_template_direct_apply`), then tokenizes with BOS added and specials parsed;
    here the parsed BOS and the added one are one id twice at the start, and one is dropped.
    """
    tokens = backend.tokenize(text, add_bos=True, special=True)
    bos = backend.tokenize("", add_bos=True, special=False)
    if bos and tokens[:2] == bos * 2:
        del tokens[0]
    return tuple(tokens)


def chat_template(spec: GenSpec, backend: Backend) -> str | None:
    """The baseline's chat template under `chat`, None without it.

    Raises:
        DataError: `chat` asked and the baseline has no template.
    """
    if not spec.chat:
        return None
    template = backend.chat_template()
    if template is None:
        raise DataError(
            f"{spec.model_set.baseline.path}: has no tokenizer.chat_template; run without --chat"
        )
    return template


def _record(
    spec: GenSpec,
    n_vocab: int,
    unit_index: int,
    prompt: tuple[tuple[int, ...], int],
    generation: Generation,
    logits: NDArray[np.float32],
) -> BaseUnit:
    """The compact record of the baseline teacher-forced on its own generation (`logits`: at
    every generated position, `forced_logits`); numpy only, so it runs on a scoring thread."""
    tokens, shared = prompt
    rng = np.random.default_rng([unit_index, SAMPLING_SEED])
    top_k = min(spec.top_k, n_vocab)
    parts, targets = [], []
    ids = np.asarray(generation.tokens, dtype=np.int64)
    for start in range(0, len(ids), BLOCK_ROWS):
        norm, part = baseline_normalize(
            logits[start : start + BLOCK_ROWS], top_k, spec.tail_samples, rng
        )
        parts.append(part)
        targets.append(norm.logprobs_at(ids[start : start + BLOCK_ROWS]))
    rows = PositionRecord.concatenate(parts)
    return BaseUnit(
        tokens,
        shared,
        generation.tokens,
        generation.text,
        generation.finish,
        generation.margins,
        rows,
        np.concatenate(targets),
    )


def _restore(stored: StoredUnits, n_units: int) -> tuple[dict[int, BaseUnit], dict[int, str]]:
    base_units: dict[int, BaseUnit] = {}
    skips: dict[int, str] = {}
    for index, (kind, payload) in stored.restore().items():
        try:
            if kind == SKIP:
                skips[index] = payload.decode()
            elif kind == BASE and 0 <= index < n_units:
                base_units[index] = decode_unit(payload)
        except (ValueError, UnicodeDecodeError):
            continue
    return base_units, skips


def _round_prompts(
    spec: GenSpec,
    backend: Backend,
    template: str | None,
    units: Units,
    turn: int,
    base_units: dict[int, BaseUnit],
    skips: dict[int, str],
    stored: StoredUnits,
) -> dict[int, tuple[tuple[int, ...], int]]:
    """The prompts of one round's units still to generate; skips recorded as they are found."""
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
        tokens, shared = prompt_tokens(spec, backend, template, (item, t), answers)
        if len(tokens) + spec.new_tokens > backend.n_ctx:
            skips[u] = (
                f"prompt of {len(tokens)} tokens leaves fewer than {spec.new_tokens} of "
                f"n_ctx={backend.n_ctx} (raise n_ctx in models.toml)"
            )
            stored.record({u: (SKIP, skips[u].encode())})
            continue
        prompts[u] = (tokens, shared)
    return prompts


def generate_baseline(
    spec: GenSpec, factory: BackendFactory, units: Units, stored: StoredUnits
) -> Generator[object, None, tuple[dict[int, BaseUnit], dict[int, str]]]:
    """Generate (or restore) every unit of the baseline; returns (units, skipped units).

    Raises:
        BackendError: no prompt fits n_ctx; DataError: `chat` without a template.
    """
    model = spec.model_set.baseline
    base_units, skips = _restore(stored, len(units))
    if base_units or skips:
        yield TurnsRestored(model.label, BASELINE, len(base_units) + len(skips), len(units))
    if len(base_units) + len(skips) == len(units):
        return base_units, skips
    backend = yield from open_model(factory, model, BASELINE)
    try:
        template = chat_template(spec, backend)
        workers = factory.scoring_workers(spec.scoring_threads, model)
        done = 0
        for turn in range(spec.n_turns):
            prompts = _round_prompts(
                spec, backend, template, units, turn, base_units, skips, stored
            )
            for batch in batches(spec, units, skips):
                if units[batch[0]][1] != turn:
                    continue
                if all(u in base_units for u in batch):
                    done += len(batch)
                    continue
                for u in batch:
                    if u not in prompts:  # restored, but its batch was not: generate it again
                        prompts[u] = (base_units[u].prompt, base_units[u].shared_prefix)
                fresh = _generate_batch(spec, backend, batch, prompts, workers)
                base_units.update(fresh)
                stored.record({u: (BASE, encode_unit(unit)) for u, unit in fresh.items()})
                for _ in batch:
                    done += 1
                    yield TurnGenerated(model.label, BASELINE, done, len(units), None)
    finally:
        backend.close()
    if not base_units:
        raise BackendError(f"{model.path}: no prompt fits n_ctx; raise n_ctx in models.toml")
    return base_units, skips


def _generate_batch(
    spec: GenSpec,
    backend: Backend,
    batch: list[int],
    prompts: dict[int, tuple[tuple[int, ...], int]],
    workers: int,
) -> dict[int, BaseUnit]:
    """One batch: the baseline generates, then reads each generation back in one prefill
    (decoded in this thread, recorded on the scoring threads)."""
    requests = [
        GenerateRequest(prompts[u][0], spec.new_tokens, spec.task.stop, prompts[u][1])
        for u in batch
    ]
    work = list(zip(batch, backend.generate(requests)))

    def decode(item: tuple[int, Generation]) -> NDArray[np.float32]:
        u, generation = item
        return forced_logits(backend, prompts[u][0], generation.tokens, prompts[u][1])

    def score(item: tuple[int, Generation], logits: NDArray[np.float32], _: RowMap) -> BaseUnit:
        u, generation = item
        return _record(spec, backend.n_vocab, u, prompts[u], generation, logits)

    return {u: unit for (u, _), unit in overlapped(work, decode, score, workers)}


def baseline_summary(
    spec: GenSpec,
    base_units: dict[int, BaseUnit],
    units: Units,
    seconds: float,
    from_cache: bool,
) -> GenBaseline:
    """The baseline's line of the report: time, tokens, truncations, accuracy by the rule."""
    model = spec.model_set.baseline
    accuracy, interval = None, None
    if has_gold(spec):
        rule = answer_rules(spec)[0]
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
