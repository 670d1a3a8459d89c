"""The acceptance rate's tail share from the baseline's tail draws against the exact Σ min(p, q)."""

from __future__ import annotations

import numpy as np
import pytest

from ggflip.scoring import kernels
from ggflip.scoring.acceptance import acceptance_exact, acceptance_from_top_k, acceptance_rows
from ggflip.scoring.topk import baseline_normalize, normalize

V, K = 5000, 64


def _row(lifted: int) -> tuple[np.ndarray, np.ndarray]:
    """One row pair with a heavy tail (~30% of the mass outside the top 64); the quant adds
    noise and, with `lifted`, moves that many tail tokens near the top."""
    rng = np.random.default_rng(lifted)
    base = (rng.standard_normal((1, V)) * 2.0).astype(np.float32)
    base[0, :20] += 5.0
    quant = (base + rng.standard_normal((1, V)) * 0.7).astype(np.float32)
    order = np.argsort(-base[0])
    quant[0, order[K + 100 : K + 100 + lifted]] = base.max() - 1.0
    return base, quant


def _exact(base: np.ndarray, quant: np.ndarray) -> float:
    """Σ min(p, q) over the full float64 rows."""
    return float(acceptance_exact(kernels.log_softmax(base[0]), kernels.log_softmax(quant[0])))


@pytest.mark.parametrize("lifted", [0, 1, 3])
def test_tail_draws_estimate_the_exact_acceptance_without_bias(lifted: int) -> None:
    """Over 400 independent records of one row the estimates average to the exact value within
    4 standard errors; the min(P_tail, Q_tail) bound stays far above it."""
    base, quant = _row(lifted)
    exact = _exact(base, quant)
    estimates = []
    for seed in range(400):
        _, record = baseline_normalize(base, K, 32, np.random.default_rng(seed))
        estimates.append(float(acceptance_rows(record, normalize(quant, record.top_ids))[0]))
    values = np.array(estimates)
    standard_error = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - exact) < 4 * standard_error
    bound = acceptance_from_top_k(
        record.top_logprobs, record.tail_logmass, normalize(quant).logprobs_at(record.top_ids)
    )[0]
    assert bound - exact > 20 * standard_error  # the bound would fail this test
    p_tail = float(np.exp(record.tail_logmass[0]))
    assert np.abs(values - exact).max() < p_tail / 2  # one row: within the tail's own share


def test_without_draws_the_tail_share_is_the_upper_bound() -> None:
    """S = 0 leaves min(P_tail, Q_tail): never below the exact value."""
    base, quant = _row(1)
    _, record = baseline_normalize(base, K, 0, np.random.default_rng(0))
    value = float(acceptance_rows(record, normalize(quant, record.top_ids))[0])
    p, q = kernels.log_softmax(base[0]), kernels.log_softmax(quant[0])
    outside = np.ones(V, dtype=bool)
    outside[record.top_ids[0]] = False
    head = float(np.minimum(np.exp(p[~outside]), np.exp(q[~outside])).sum())
    tails = min(np.exp(p[outside]).sum(), np.exp(q[outside]).sum())
    assert value == pytest.approx(head + tails, rel=1e-6)
    assert value > _exact(base, quant)
