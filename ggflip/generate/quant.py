"""A quant's side of a generation run: its own greedy generations, then teacher forcing.

The quant generates the same fixed batches as the baseline (from the baseline's prompts, so a
later turn follows the baseline's conversation), then reads each baseline generation in one
prefill; `compare.compare_turn` turns both into the turn's row. Rows restored from the run
store are yielded like fresh ones, so a front end sees every row whichever way it came.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Generator

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory, GenerateRequest, Generation
from ggflip.config.models_toml import ModelSpec
from ggflip.generate.compare import TurnRow, compare_turn
from ggflip.generate.events import TurnGenerated, TurnsRestored
from ggflip.generate.plan import (
    StoredUnits,
    answer_rules,
    batches,
    forced_logits,
    has_gold,
)
from ggflip.generate.records import BaseUnit
from ggflip.generate.report import GenQuant, summarize
from ggflip.generate.spec import GenSpec
from ggflip.runs.events import QUANT
from ggflip.runs.loading import open_model
from ggflip.runs.pipeline import RowMap, overlapped
from ggflip.store.rowdb import ROW

# A turn's llama.cpp part: the quant's logits at the baseline's generated positions, and the text of
# each token of both generations (the vocabulary is read in the decoding thread).
_Forced = tuple[NDArray[np.float32], list[str], list[str]]


def decode_row(payload: bytes) -> TurnRow:
    """A stored row back as a TurnRow (JSON lists back to tuples).

    Raises:
        ValueError, TypeError, KeyError: a payload that is not a stored row.
    """
    fields = json.loads(payload)
    fields["answers"] = {k: (v[0], v[1]) for k, v in fields["answers"].items()}
    for name in ("token_kl", "base_pieces", "quant_pieces"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return TurnRow(**fields)


def _restore(stored: StoredUnits, base_units: dict[int, BaseUnit]) -> dict[int, TurnRow]:
    rows: dict[int, TurnRow] = {}
    for index, (kind, payload) in stored.restore().items():
        if kind == ROW and index in base_units:
            try:
                rows[index] = decode_row(payload)
            except (ValueError, TypeError, KeyError):
                continue
    return rows


def compare_quant(
    spec: GenSpec,
    factory: BackendFactory,
    model: ModelSpec,
    units: list[tuple[int, int]],
    base_units: dict[int, BaseUnit],
    skips: dict[int, str],
    stored: StoredUnits,
) -> Generator[object, None, GenQuant]:
    """Generate and compare one quant over every batch; returns its summary."""
    rows = _restore(stored, base_units)
    if rows:
        yield TurnsRestored(model.label, QUANT, len(rows), len(base_units))
    backend: Backend | None = None
    seconds = 0.0
    rules = answer_rules(spec)
    workers = factory.scoring_workers(spec.scoring_threads, model)
    try:
        done = 0
        for batch in batches(spec, units, skips):
            if all(u in rows for u in batch):
                for u in batch:
                    done += 1
                    yield TurnGenerated(model.label, QUANT, done, len(base_units), rows[u])
                continue
            if backend is None:
                backend = yield from open_model(factory, model, QUANT)
            started = time.perf_counter()
            fresh = _compare_batch(spec, backend, units, base_units, batch, rules, workers)
            rows.update(fresh)
            stored.record(
                {u: (ROW, json.dumps(dataclasses.asdict(row)).encode()) for u, row in fresh.items()}
            )
            seconds += time.perf_counter() - started
            for u in batch:
                done += 1
                yield TurnGenerated(model.label, QUANT, done, len(base_units), rows[u])
    finally:
        if backend is not None:
            backend.close()
    ordered = [rows[u] for u in sorted(rows)]
    rule = rules[0] if has_gold(spec) else None
    return summarize(model.label, str(model.path), ordered, rule, seconds, spec.margins)


def _compare_batch(
    spec: GenSpec,
    backend: Backend,
    units: list[tuple[int, int]],
    base_units: dict[int, BaseUnit],
    batch: list[int],
    rules: tuple[str, ...],
    workers: int,
) -> dict[int, TurnRow]:
    """One batch: the quant generates from the baseline's prompts, then reads each baseline
    generation in one prefill (decoded in this thread, compared on the scoring threads)."""
    requests = [
        GenerateRequest(
            base_units[u].prompt, spec.new_tokens, spec.task.stop, base_units[u].shared_prefix
        )
        for u in batch
    ]
    work = list(zip(batch, backend.generate(requests)))

    def decode(item: tuple[int, Generation]) -> _Forced:
        unit, generation = base_units[item[0]], item[1]
        logits = forced_logits(backend, unit.prompt, unit.tokens, unit.shared_prefix)
        return logits, backend.token_pieces(unit.tokens), backend.token_pieces(generation.tokens)

    def score(item: tuple[int, Generation], forced: _Forced, _: RowMap) -> TurnRow:
        u, generation = item
        spec_item = spec.items[units[u][0]]
        return compare_turn(
            u,
            spec_item.id,
            units[u][1],
            spec_item.answer,
            rules,
            base_units[u],
            generation,
            *forced,
        )

    return {u: row for (u, _), row in overlapped(work, decode, score, workers)}
