"""The baseline record's precision: float32 logits with a float64 log-sum-exp add no error.

Expected values come from an independent float64 computation in plain Python (`math.fsum` over
`math.exp`), never from the kernels under test; the rows are the adversarial ones (very peaked,
very flat, wide-ranging, badly damaged quants, tokens of probability 0).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest

from ggflip.choice.baseline import BaselineScores
from ggflip.choice.cache import BaselineCache
from ggflip.choice.row_store import decode_baseline, encode_baseline
from ggflip.corpus.cache import BaselineWriter, open_baseline
from ggflip.generate.records import BaseUnit, decode_unit, encode_unit
from ggflip.scoring.acceptance import acceptance_rows
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import BaselineRows, baseline_normalize, kl_rows, normalize

V = 3000  # 46 blocks of 64: K = 8 goes through the block-max prefilter, K = V does not


def _rows() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(baseline, quant) float32 logits (1, V) of each adversarial case."""
    rng = np.random.default_rng(11)
    normal = rng.normal(size=V).astype(np.float32)
    peaked = normal.copy()
    peaked[7] = 45.0  # every other token below e^-40
    wide = np.linspace(30.0, -100.0, V, dtype=np.float32)  # log-probs down to -130
    rng.shuffle(wide)
    masked = normal.copy()
    masked[rng.choice(V, 900, replace=False)] = -np.inf
    masked_quant = masked + rng.normal(scale=0.5, size=V).astype(np.float32)
    masked_quant[np.flatnonzero(masked_quant > -np.inf)[:50]] += 3.0
    cases = {
        "peaked": (peaked, peaked + rng.normal(scale=0.1, size=V).astype(np.float32)),
        "peaked, top lost": (peaked, np.where(np.arange(V) == 7, -5.0, peaked).astype(np.float32)),
        "flat": (np.zeros(V, np.float32), rng.normal(scale=1e-3, size=V).astype(np.float32)),
        "wide": (wide, wide + rng.normal(scale=0.3, size=V).astype(np.float32)),
        "damaged": (normal, rng.normal(scale=5.0, size=V).astype(np.float32)),
        "reversed": (wide, -wide),
        "zero-probability tokens": (masked, masked_quant),
    }
    return {name: (base[None], quant[None]) for name, (base, quant) in cases.items()}


CASES = _rows()


def _logprobs(logits: np.ndarray) -> list[float]:
    """float64 log-softmax of one row, in plain Python (-inf stays -inf)."""
    values = [float(x) for x in logits]
    peak = max(values)
    lse = peak + math.log(math.fsum(math.exp(x - peak) for x in values))
    return [x - lse for x in values]


def _exact_kl(base: np.ndarray, quant: np.ndarray, top: np.ndarray | None = None) -> float:
    """KL(P || Q) over the full rows; with `top` ids, of the top and the merged rest (the lower
    bound the record computes exactly)."""
    p, q = _logprobs(base[0]), _logprobs(quant[0])
    kept = range(len(p)) if top is None else [int(i) for i in top]
    terms = [math.exp(p[i]) * (p[i] - q[i]) for i in kept if p[i] > -math.inf]
    if top is not None:
        rest = sorted(set(range(len(p))) - set(kept))
        p_rest = math.fsum(math.exp(p[i]) for i in rest)
        q_rest = math.fsum(math.exp(q[i]) for i in rest)
        if p_rest > 0:
            terms.append(p_rest * (math.log(p_rest) - math.log(q_rest)))
    return math.fsum(terms)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("k", [8, V])
def test_kl_through_the_record_is_float64_exact_within_1e_7(case: str, k: int) -> None:
    """The record's KL (no draws: the exact top K and merged tail; K = V: the full KL) against the
    independent float64 value."""
    base, quant = CASES[case]
    _, record = baseline_normalize(base, k, 0, np.random.default_rng(0))
    bound, gap = kl_rows(record, normalize(quant, record.top_ids))
    expected = _exact_kl(base, quant, None if k == V else record.top_ids[0])
    assert gap[0] == 0.0
    assert abs(bound[0] - expected) <= 1e-7 * max(1.0, expected)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("k", [8, V])
def test_the_baseline_against_itself_through_the_record_is_below_1e_12(case: str, k: int) -> None:
    base, _ = CASES[case]
    _, record = baseline_normalize(base, k, 16, np.random.default_rng(0))
    own = normalize(base, record.top_ids)
    bound, gap = kl_rows(record, own)
    assert 0.0 <= bound[0] <= 1e-12 and 0.0 <= gap[0] <= 1e-12
    # Σ min(p, p) is 1 up to the float32 exponentials' 1e-7 in the normalizer (no storage error)
    assert acceptance_rows(record, own)[0] == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_stored_log_probs_are_the_float64_values_of_the_full_row(case: str) -> None:
    """log p = logit - lse gives back, bit for bit, what the kernel computes from the full row
    (so storing float32 logits adds no error), and it is the independent float64 log-prob within
    the float32 exponentials' 1e-7."""
    base, _ = CASES[case]
    _, record = baseline_normalize(base, 8, 16, np.random.default_rng(0))
    full = normalize(base)
    assert record.top_logits.dtype == np.float32 and record.lse.dtype == np.float64
    assert np.array_equal(record.top_logprobs, full.logprobs_at(record.top_ids))
    assert np.array_equal(record.sample_logprobs, full.logprobs_at(record.sample_ids))
    expected = _logprobs(base[0])
    np.testing.assert_allclose(
        record.top_logprobs[0], [expected[i] for i in record.top_ids[0]], rtol=0, atol=1e-7
    )


def test_a_quant_that_drops_a_token_the_baseline_keeps_has_infinite_kl() -> None:
    base, quant = CASES["zero-probability tokens"]
    finite = int(np.flatnonzero(base[0] > -np.inf)[-1])
    dropped = quant.copy()
    dropped[0, finite] = -np.inf
    _, record = baseline_normalize(base, V, 0, np.random.default_rng(0))
    assert kl_rows(record, normalize(dropped, record.top_ids))[0][0] == np.inf


def test_log_probs_given_as_such_round_by_at_most_2_to_the_minus_24_of_their_distance() -> None:
    rng = np.random.default_rng(5)
    top = np.sort(rng.uniform(-120.0, -0.01, size=(3, 40)))[:, ::-1].copy()
    top[1, 30:] = -np.inf
    samples = rng.uniform(-130.0, -20.0, size=(3, 6))
    rows = BaselineRows.of_logprobs(
        np.zeros((3, 40), np.int64), top, np.full(3, -3.0), np.zeros((3, 6), np.int64), samples
    )
    assert rows.top_logits.dtype == np.float32 and rows.sample_logits.dtype == np.float32
    assert np.array_equal(np.isinf(rows.top_logprobs), np.isinf(top))
    finite = np.isfinite(top)
    error = np.abs(rows.top_logprobs[finite] - top[finite])
    assert (error <= 2.0**-24 * np.abs(top - top[:, :1])[finite]).all()
    assert (np.abs(rows.sample_logprobs - samples) <= 2.0**-24 * np.abs(samples - top[:, :1])).all()
    assert np.array_equal(rows.top_logprobs[:, 0], top[:, 0])  # the row value itself is exact


def _record() -> PositionRecord:
    base = np.concatenate(
        [CASES[name][0] for name in ("peaked", "wide", "zero-probability tokens")]
    )
    return PositionRecord.of(baseline_normalize(base, 8, 4, np.random.default_rng(1))[1])


def _assert_same(record: PositionRecord, again: PositionRecord) -> None:
    for name, array in record.named().items():
        stored = again.named()[name]
        assert stored.dtype == array.dtype, name
        np.testing.assert_array_equal(stored, array, err_msg=name)
    quant = normalize(CASES["damaged"][1].repeat(3, axis=0), record.top_ids)
    assert [a.tolist() for a in kl_rows(again, quant)] == [
        a.tolist() for a in kl_rows(record, quant)
    ]


def test_every_store_gives_back_the_record_exactly(tmp_path: Path) -> None:
    """The corpus cache, the multiple-choice cache and run store, the generation record and a
    plain `.npz` of `named()` keep every array's values and dtype."""
    record = _record()
    buffer = io.BytesIO()
    np.savez(buffer, **record.named())
    with np.load(io.BytesIO(buffer.getvalue())) as archive:
        _assert_same(record, PositionRecord.of(archive))

    writer = BaselineWriter(tmp_path, "key", 1, 4, 3, 8, 4)
    writer.write_chunk(0, np.arange(4), record, np.zeros(3))
    corpus = open_baseline(writer.finish({}).folder)
    assert corpus is not None
    _assert_same(record, corpus.positions)

    scores = BaselineScores.empty(1, 2, 8, [3], 4)
    scores.positions.put(0, record)
    cache = BaselineCache(tmp_path)
    cache.save("key", scores, {})
    loaded = cache.load("key", 1, 8, 4)
    assert loaded is not None
    _assert_same(record, loaded[0].positions)
    _assert_same(record, decode_baseline(encode_baseline(scores, 0, 2), 8, 4).positions)

    unit = BaseUnit((1, 2), 0, (3, 4, 5), "x", "stop", (0.0,) * 3, record, np.zeros(3))
    _assert_same(record, decode_unit(encode_unit(unit)).rows)
