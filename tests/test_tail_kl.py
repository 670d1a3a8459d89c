"""The tail term of the KL kernel (`ggflip.scoring.topk.kl_rows`) per row, against the exact
float64 KL over the full vocabulary, on diffuse tails and on tails where the quant lifts a few
tokens."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ggflip.scoring import kernels
from ggflip.scoring.topk import baseline_normalize, kl_rows, normalize


def _peaked_pair(seed: int, rows: int, k: int, lifted: int) -> tuple[np.ndarray, np.ndarray]:
    """Language-model-like rows (20 tokens hold most of the mass; at K = 64 the merged tail hides
    ~5% of a row's KL, as on Gemma's) of 20,000 tokens; the quant adds
    small noise and, with `lifted` > 0, moves that many tail tokens (ranks k+50 to k+3,000) up to
    1-5 nats below the top, as a quant that piles mass outside the baseline's top K does."""
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((rows, 20_000)) * 2.5).astype(np.float32)
    base[:, :20] += 11.0
    quant = (base + rng.standard_normal(base.shape) * 0.1).astype(np.float32)
    for row in range(rows):
        order = np.argsort(-base[row])
        for _ in range(lifted):
            quant[row, order[k + rng.integers(50, 3000)]] = base[row].max() - rng.uniform(1, 5)
    return base, quant


def _row_errors(base: np.ndarray, quant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per row: exact KL (float64 over the full vocabulary), ggflip's estimate and lower bound."""
    _, record = baseline_normalize(base, k, 32, np.random.default_rng(5))
    lower, gap = kl_rows(record, normalize(quant, record.top_ids))
    exact = np.array(
        [
            kernels.kl_divergence(kernels.log_softmax(b), kernels.log_softmax(q))
            for b, q in zip(base, quant)
        ]
    )
    return {"exact": exact, "estimate": lower + gap, "lower": lower}


@pytest.mark.parametrize("k", [64, 256, 512])
@pytest.mark.parametrize("lifted", [0, 1, 3])
def test_per_row_kl_within_five_percent_on_diffuse_and_sparse_tails(k: int, lifted: int) -> None:
    """Issue 22's target at each mode's default K: per-row |error| p90 <= 5%, max-row ratio
    1 ± 0.1, with no lifted tail token (diffuse noise) and with one or three. The lower bound alone
    misses by more (by far more where tokens are lifted), so the tail term is what is tested; the
    plain k3 tail estimate misses the lifted cases (p90 34-61% on these rows)."""
    base, quant = _peaked_pair(10 * k + lifted, 150, k, lifted)
    rows = _row_errors(base, quant, k)
    error = np.abs(rows["estimate"] / rows["exact"] - 1)
    assert np.quantile(error, 0.9) <= 0.05
    assert rows["estimate"].max() / rows["exact"].max() == pytest.approx(1.0, abs=0.1)
    assert np.quantile(np.abs(rows["lower"] / rows["exact"] - 1), 0.9) > (0.3 if lifted else 0.06)


def test_one_lifted_token_no_longer_swings_the_row() -> None:
    """The heavy tail of the plain k3 estimate: a lifted token that is drawn once in 32 draws. Its
    r = Q|tail/P|tail is huge, so k3 reads several times the exact KL; the split estimate does
    not."""
    n = 20_000
    base = np.zeros((1, n), dtype=np.float32)
    base[0, :64] = np.linspace(14.0, 6.0, 64, dtype=np.float32)
    base[0, 64:] = np.linspace(0.0, -4.0, n - 64, dtype=np.float32)
    quant = base.copy()
    quant[0, 100] = 11.0  # the lifted tail token, far above the baseline's K-th probability
    _, record = baseline_normalize(base, 64, 32, np.random.default_rng(0))
    drawn = np.flatnonzero(record.sample_ids[0] == 100).size
    ids = record.sample_ids[0].copy()
    ids[0] = 100  # make sure it is drawn once: the case k3 gets wrong
    forced = replace(record, sample_ids=ids[None], sample_logits=base[:, ids])
    lower, gap = kl_rows(forced, normalize(quant, record.top_ids))
    p, q = kernels.log_softmax(base[0]), kernels.log_softmax(quant[0])
    exact = float(kernels.kl_divergence(p, q))
    log_r = (q[ids] - kernels.logsumexp(q[64:])) - (p[ids] - kernels.logsumexp(p[64:]))
    k3 = lower[0] + math.exp(kernels.logsumexp(p[64:])) * float(np.mean(np.expm1(log_r) - log_r))
    assert drawn <= 1
    assert k3 > 3 * exact  # the old estimate's swing
    assert lower[0] + gap[0] == pytest.approx(exact, rel=0.1)
