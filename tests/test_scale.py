"""Summaries at full-benchmark scale: exact McNemar p-values and a 15,000-question run."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.fake import FakeBackendFactory, FakeModel
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.scoring import stats
from ggflip.tasks.questions import Question, QuestionSet


def _binomial_two_sided(n_lost: int, n_gained: int) -> float:
    """The exact McNemar p-value as a rational number: 2 · P(X <= min(b, c)), X ~ Bin(b + c, ½)."""
    n, k = n_lost + n_gained, min(n_lost, n_gained)
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def _log_binomial_two_sided(n_lost: int, n_gained: int) -> float:
    """The same p-value from log-gamma terms summed in log space: a second, float route."""
    n, k = n_lost + n_gained, min(n_lost, n_gained)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    peak = max(logs)
    log_tail = peak + math.log(math.fsum(math.exp(x - peak) for x in logs)) - n * math.log(2)
    return min(1.0, math.exp(math.log(2) + log_tail))


@pytest.mark.parametrize(
    ("n_lost", "n_gained"),
    [(3, 7), (500, 523), (480, 544), (6900, 7142), (7021, 7021), (0, 1024), (4, 1020)],
)
def test_mcnemar_matches_the_exact_binomial(n_lost: int, n_gained: int) -> None:
    """n = 10, 1,023, 1,024, 14,042 and the symmetric case, against fractions and log-gamma."""
    p = stats.mcnemar_exact(n_lost, n_gained)
    assert p == pytest.approx(_binomial_two_sided(n_lost, n_gained), rel=1e-12, abs=1e-300)
    assert stats.mcnemar_exact(n_gained, n_lost) == p
    if p > 1e-300:
        assert p == pytest.approx(_log_binomial_two_sided(n_lost, n_gained), rel=1e-9)


def test_mcnemar_by_hand_small_and_symmetric() -> None:
    assert stats.mcnemar_exact(3, 7) == pytest.approx(2 * 176 / 1024)  # 1 + 10 + 45 + 120
    assert stats.mcnemar_exact(7021, 7021) == 1.0


def test_mcnemar_far_below_float_range_is_zero_not_an_error() -> None:
    assert stats.mcnemar_exact(0, 1100) == 0.0


def test_a_15000_question_run_summarizes_without_error() -> None:
    """A heavy quant changes about half the answers: thousands of discordant pairs."""
    questions = QuestionSet(
        "memory",
        tuple(
            Question(f"q{i}", "s", f"question {i}", ("w1", "w2", "w3", "w4"), i % 4)
            for i in range(15_000)
        ),
    )
    model_set = ModelSet(
        "fake", ModelSpec("F16", Path("/m/f16.gguf")), (ModelSpec("Q2", Path("/m/q2.gguf")),)
    )
    factory = FakeBackendFactory({"/m/f16.gguf": FakeModel(), "/m/q2.gguf": FakeModel(noise=2.0)})
    events = list(run_comparison(RunSpec(model_set, questions, batch_size=64), factory))
    assert isinstance(events[-1], RunFinished)
    quant = events[-1].report.quants[0]
    rows = quant.rows
    lost = sum(r.flip == "correct_to_incorrect" for r in rows)
    gained = sum(r.flip == "incorrect_to_correct" for r in rows)
    assert lost + gained > 1024
    assert quant.n_flips_lost == lost and quant.n_flips_gained == gained
    assert quant.mcnemar_p == pytest.approx(_binomial_two_sided(lost, gained), rel=1e-12)
    assert np.isfinite(quant.kl_mean)
