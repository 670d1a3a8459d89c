"""The one KL kernel (`ggflip.scoring.topk`) against exact float64 KL, vocabularies above K."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ggflip.scoring import kernels
from ggflip.scoring.topk import baseline_normalize, kl_rows, normalize, top_k_ids

V, K = 5000, 64


def _record(logits: np.ndarray, k: int, n_samples: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    return baseline_normalize(logits, k, n_samples, rng)[1]


def _pair(seed: int, noise: float, rows: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((rows, V)) * 3).astype(np.float32)
    quant = (base + rng.standard_normal((rows, V)) * noise).astype(np.float32)
    return base, quant


def _exact_parts(p_logits: np.ndarray, q_logits: np.ndarray, ids: np.ndarray):  # type: ignore[no-untyped-def]
    """Exact KL, its merged-tail lower bound and the tail's share, all in float64 by hand."""
    p, q = kernels.log_softmax(p_logits), kernels.log_softmax(q_logits)
    outside = np.ones(p.size, dtype=bool)
    outside[ids] = False
    p_tail, q_tail = kernels.logsumexp(p[outside]), kernels.logsumexp(q[outside])
    head = float(np.sum(np.exp(p[ids]) * (p[ids] - q[ids])))
    lower = head + math.exp(p_tail) * (p_tail - q_tail)
    share = math.exp(p_tail) * float(
        kernels.kl_divergence(p[outside] - p_tail, q[outside] - q_tail)
    )
    return float(kernels.kl_divergence(p, q)), lower, share, float(p_tail)


def test_top_k_ids_most_probable_first() -> None:
    ids = top_k_ids(np.array([[0.1, 0.5, 0.3, 0.9]], dtype=np.float32), 2)
    assert ids.tolist() == [[3, 1]]


def test_lower_bound_and_tail_mass_match_float64_by_hand() -> None:
    base, quant = _pair(0, 0.3)
    record = _record(base, K, 0, np.random.default_rng(0))
    lower, gap = kl_rows(record, normalize(quant))
    assert (gap == 0).all()  # no draws, no estimate
    for row in range(len(base)):
        exact, want_lower, share, p_tail = _exact_parts(base[row], quant[row], record.top_ids[row])
        assert record.tail_logmass[row] == pytest.approx(p_tail, abs=1e-6)
        assert lower[row] == pytest.approx(want_lower, rel=1e-5)
        assert lower[row] <= exact
        assert exact - lower[row] == pytest.approx(share, rel=1e-4)
        assert share > 0.01 * exact  # a real tail: the test would see it missing


def test_tail_estimate_recovers_the_exact_kl_on_average() -> None:
    """Lower bound + sampled estimate is unbiased: over 200 rows it lands within 1% of exact."""
    base, quant = _pair(1, 0.3, rows=200)
    record = _record(base, K, 32, np.random.default_rng(2))
    lower, gap = kl_rows(record, normalize(quant))
    exact = np.array(
        [_exact_parts(base[r], quant[r], record.top_ids[r])[0] for r in range(len(base))]
    )
    assert lower.mean() < 0.97 * exact.mean()  # the bound alone misses > 3%
    assert (lower + gap).mean() == pytest.approx(exact.mean(), rel=0.01)


def test_a_tail_far_below_the_top_is_summed_not_cancelled() -> None:
    """P(tail) ~ 1e-19: 1 - P(top K) is rounding noise there, the summed tail is not."""
    logits = np.full((1, V), -50.0, dtype=np.float32)
    logits[0, :K] = 0.0
    record = _record(logits, K, 4, np.random.default_rng(0))
    want = math.log(V - K) - 50.0 - math.log(K + (V - K) * math.exp(-50.0))
    assert record.tail_logmass[0] == pytest.approx(want, rel=1e-6)


def test_a_quant_tail_that_underflows_float32_is_not_infinite() -> None:
    """The quant puts its tail 120 nats down: every float32 term is 0, the KL is still finite."""
    base = np.zeros((1, V), dtype=np.float32)
    base[0, :K] = 5.0
    quant = np.full((1, V), -120.0, dtype=np.float32)
    quant[0, :K] = 5.0
    record = _record(base, K, 16, np.random.default_rng(0))
    lower, gap = kl_rows(record, normalize(quant))
    exact, want_lower, _, _ = _exact_parts(base[0], quant[0], record.top_ids[0])
    assert math.isfinite(lower[0]) and math.isfinite(gap[0])
    assert lower[0] == pytest.approx(want_lower, rel=1e-6)
    assert lower[0] + gap[0] == pytest.approx(exact, rel=1e-6)  # uniform tails: r is constant


def test_float32_normalizer_drifts_where_the_kernel_does_not() -> None:
    """On 262,144 tokens a float32 log-softmax summed in order is off by ~3e-6 in KL (8% of this
    Q8_0-sized KL); the kernel's float64 sums stay within 1e-7 (its float32 stored log-probs)."""
    n = 262_144
    rng = np.random.default_rng(0)
    rng.standard_normal(n)  # the measured draw: the second pair of this seed
    rng.standard_normal(n)
    base = (rng.standard_normal(n) * 4).astype(np.float32)
    quant = (base + rng.standard_normal(n).astype(np.float32) * 0.01).astype(np.float32)
    exact = float(kernels.kl_divergence(kernels.log_softmax(base), kernels.log_softmax(quant)))

    def float32_log_softmax(x: np.ndarray) -> np.ndarray:
        shifted = x - x.max()
        return shifted - np.log(np.cumsum(np.exp(shifted), dtype=np.float32)[-1])

    p, q = float32_log_softmax(base), float32_log_softmax(quant)
    drift = float(np.sum(np.exp(p) * (p - q), dtype=np.float32)) - exact
    record = _record(base[None], n, 0, np.random.default_rng(0))
    kernel = float(kl_rows(record, normalize(quant[None]))[0][0]) - exact
    assert abs(drift) > 1e-6
    assert abs(kernel) < 1e-7


def _top_k_by_full_sort(row: np.ndarray, k: int) -> list[int]:
    """The reference: every id sorted by (-logit, id), the first k."""
    return np.lexsort((np.arange(row.size), -row.astype(np.float64)))[:k].tolist()


@pytest.mark.parametrize(
    ("n_vocab", "k"), [(5000, 64), (5000, 77), (4100, 64), (70_001, 512), (300, 512), (64, 64)]
)
def test_block_prefilter_top_k_equals_a_full_sort(n_vocab: int, k: int) -> None:
    """Vocabularies that are not whole blocks, k near the block count, k above the vocabulary,
    and rounded logits with many ties at the k-th place: ties go to the lower id."""
    rng = np.random.default_rng(n_vocab + k)
    rows = np.round(rng.standard_normal((6, n_vocab)) * 3, 1).astype(np.float32)
    rows[0, -1] = rows[0].max() + 1  # the best token in the partial last block
    got = top_k_ids(rows, k)
    for row, ids in zip(rows, got):
        assert ids.tolist() == _top_k_by_full_sort(row, min(k, n_vocab))


def test_tail_draws_are_those_of_a_full_row_cumulative_sum() -> None:
    """Block-then-token sampling picks the token a float64 running sum over the whole row would
    pick for the same uniforms, never a top-K token."""
    base, _ = _pair(3, 0.3, rows=6)
    _, record = baseline_normalize(base, K, 200, np.random.default_rng(7))
    uniforms = np.random.default_rng(7)
    for row in range(len(base)):
        weights = np.exp(base[row] - base[row].max())
        weights[record.top_ids[row]] = 0.0
        running = np.cumsum(weights, dtype=np.float64)
        want = np.searchsorted(running, uniforms.random(200) * running[-1], side="right")
        assert record.sample_ids[row].tolist() == want.tolist()
        assert not set(record.sample_ids[row].tolist()) & set(record.top_ids[row].tolist())


def test_one_pass_normalizer_and_tail_match_float64() -> None:
    """lse and the mass outside given ids, from one float32 pass, against float64 by hand: within
    float32's exponential rounding (6e-8 relative per term, so under 1e-7 in a log)."""
    base, quant = _pair(4, 0.3)
    _, record = baseline_normalize(base, K, 0, np.random.default_rng(0))
    norm = normalize(quant, record.top_ids)
    for row in range(len(quant)):
        exact = kernels.log_softmax(quant[row])
        outside = np.ones(V, dtype=bool)
        outside[record.top_ids[row]] = False
        assert norm.lse[row] - float(quant[row, 0]) == pytest.approx(-exact[0], abs=1e-7)
        assert norm.tail is not None
        assert norm.tail[row] == pytest.approx(kernels.logsumexp(exact[outside]), abs=1e-7)
    assert np.array_equal(norm.tail_logmass(record.top_ids), norm.tail)
    other = np.roll(record.top_ids, 1, axis=1)[:, :8]  # other ids: computed afresh, not reused
    assert not np.allclose(norm.tail_logmass(other), norm.tail)
