"""Metric functions against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ggflip.scoring import kernels, metrics, stats
from ggflip.scoring.metrics import PairedArrays


def test_log_softmax_matches_hand_values() -> None:
    out = kernels.log_softmax(np.array([0.0, math.log(3.0)]))
    assert out == pytest.approx([math.log(0.25), math.log(0.75)])


def test_kl_divergence_by_hand() -> None:
    p = np.log([0.5, 0.5])
    q = np.log([0.25, 0.75])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kernels.kl_divergence(p, q) == pytest.approx(expected)


def test_kl_divergence_ignores_zero_probability_tokens() -> None:
    p = np.array([0.0, -np.inf])
    q = np.array([-np.inf, 0.0])
    assert kernels.kl_divergence(np.array([0.0, -np.inf]), np.array([0.0, -np.inf])) == 0.0
    assert math.isinf(kernels.kl_divergence(p, q))


def test_option_distribution_and_margin() -> None:
    probs = kernels.option_distribution(np.log([0.2, 0.1, 0.05, 0.05]))
    assert probs == pytest.approx([0.5, 0.25, 0.125, 0.125])
    assert kernels.top_margin(probs) == pytest.approx(0.25)


def test_wilson_interval_by_hand() -> None:
    low, high = stats.wilson_interval(50, 100)
    # z = 1.96: centre 0.5, half-width 1.96*sqrt(.25/100 + 1.96²/40000)/(1 + 1.96²/100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    assert stats.wilson_interval(0, 10)[0] == 0.0


def test_mcnemar_exact_by_hand() -> None:
    # b=1, c=5: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64
    assert stats.mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert stats.mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0


def test_mean_interval_by_hand() -> None:
    low, high = stats.mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    half = 1.959963984540054 * math.sqrt(5 / 3) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))


def test_margin_buckets_count_flips_per_bucket() -> None:
    margins = np.array([0.01, 0.04, 0.07, 0.5, 1.0])
    flipped = np.array([True, False, True, False, False])
    buckets = stats.margin_buckets(margins, flipped, edges=(0.0, 0.05, 0.1, 1.0))
    assert [(b["n"], b["flips"]) for b in buckets] == [(2, 1), (1, 1), (2, 0)]
    assert buckets[0]["flip_rate"] == 0.5


def _arrays() -> PairedArrays:
    # gold:   A A B B C
    # base:   A A B C C   -> correct: T T T F T
    # quant:  A B B A D   -> correct: T F T F F
    return PairedArrays(
        gold=np.array([0, 0, 1, 1, 2]),
        base_choice=np.array([0, 0, 1, 2, 2]),
        quant_choice=np.array([0, 1, 1, 0, 3]),
        kl=np.array([0.0, 0.1, 0.2, 0.3, 0.4]),
        kl_lower_bound=np.array([0.0, 0.1, 0.1, 0.3, 0.2]),
        kl_options=np.array([0.0, 0.05, 0.0, 0.1, 0.2]),
        same_top=np.array([True, False, True, True, False]),
        top_margin=np.array([0.9, 0.1, 0.5, 0.2, 0.05]),
    )


def test_registered_metrics_by_hand() -> None:
    a = _arrays()
    value = metrics.compute("choice", a)
    assert value["baseline_accuracy"] == pytest.approx(0.8)
    assert value["accuracy"] == pytest.approx(0.4)
    assert value["delta_accuracy"] == pytest.approx(-0.4)
    assert value["flips_lost"] == pytest.approx(0.4)  # questions 1 and 4
    assert value["flips_gained"] == pytest.approx(0.0)
    assert value["flips"] == pytest.approx(0.4)
    assert value["answer_changes"] == pytest.approx(0.6)  # 1, 3 (wrong -> other wrong), 4
    assert value["mcnemar_p"] == pytest.approx(0.5)  # b=2, c=0: 2 * 1/4
    assert value["kl_mean"] == pytest.approx(0.2)
    assert value["kl_mean_lower_bound"] == pytest.approx(0.14)
    assert value["kl_median"] == pytest.approx(0.2)
    assert value["kl_max"] == pytest.approx(0.4)
    assert value["kl_p90"] == pytest.approx(0.36)
    assert value["kl_options_mean"] == pytest.approx(0.07)
    assert value["same_top"] == pytest.approx(0.6)
