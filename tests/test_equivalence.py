"""Equivalence (`ggflip.scoring.equivalence`): the arithmetic against independent computations,
the false "equivalent" rate at the margin by simulation, `undecided`'s sample-size estimate, and
the F16 against itself on the fake backend."""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.report import report_from_dict
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.scoring import equivalence as eq
from ggflip.tasks.questions import QuestionSet


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _tango_by_search(n: int, lost: int, gained: int, delta: float) -> float:
    """Tango's Z with the restricted MLE found by maximizing the trinomial log-likelihood over q
    (golden-section search), not by the quadratic's root."""
    lo, hi = max(0.0, -delta) + 1e-15, (1 - delta) / 2 - 1e-15

    def loglik(q: float) -> float:
        parts = [(lost, q), (gained, q + delta), (n - lost - gained, 1 - 2 * q - delta)]
        return sum(k * math.log(p) for k, p in parts if k)

    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (a, hi) if loglik(a) < loglik(b) else (lo, b)
    q = (lo + hi) / 2
    return (gained - lost - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


@pytest.mark.parametrize(
    ("n", "lost", "gained"), [(300, 1, 4), (200, 3, 9), (14042, 100, 120), (500, 12, 2)]
)
def test_tost_p_values_match_a_likelihood_search(n: int, lost: int, gained: int) -> None:
    result = eq.accuracy_tost(n, lost, gained, 0.01)
    z_low = _tango_by_search(n, lost, gained, -0.01)
    z_high = _tango_by_search(n, lost, gained, 0.01)
    assert result.p_lower == pytest.approx(_normal_sf(z_low), rel=1e-6)
    assert result.p_upper == pytest.approx(_normal_sf(-z_high), rel=1e-6)
    assert result.estimate == pytest.approx(float(Fraction(gained - lost, n)), rel=1e-15)
    # the interval's ends are where the search's Z is ±1.645
    assert _tango_by_search(n, lost, gained, result.ci[0]) == pytest.approx(eq.Z, abs=1e-6)
    assert _tango_by_search(n, lost, gained, result.ci[1]) == pytest.approx(-eq.Z, abs=1e-6)


def test_tost_with_no_discordant_pair_by_hand() -> None:
    """0 lost, 0 gained of 300: the restricted MLE of q is 0 at δ = ±m, so Z = ∓√(n·m/(1 - m))
    = ∓1.7408 and each one-sided p = P(N > 1.7408) = 0.0409 < 0.05: equivalent within ±1 pt."""
    result = eq.accuracy_tost(300, 0, 0, 0.01)
    expected = _normal_sf(math.sqrt(300 * 0.01 / 0.99))
    assert result.p_lower == pytest.approx(expected, rel=1e-12)
    assert result.p_upper == pytest.approx(expected, rel=1e-12)
    assert result.verdict == eq.EQUIVALENT
    # ... and at 250 questions √(250·0.01/0.99) = 1.589 < 1.645: not yet
    assert eq.accuracy_tost(250, 0, 0, 0.01).verdict == eq.UNDECIDED


def test_tost_different_when_the_interval_is_beyond_the_margin() -> None:
    result = eq.accuracy_tost(2000, 80, 10, 0.01)  # -3.5 points
    assert result.verdict == eq.DIFFERENT
    assert result.ci[1] < -0.01
    assert result.n_more is None


def _binomial_cdf_exact(n: int, k: int, p: Fraction) -> Fraction:
    """Σ C(n, i)·a^i·(d - a)^(n - i) / d^n over i <= k for p = a/d, in integers."""
    a, d = p.numerator, p.denominator
    total = sum(math.comb(n, i) * a**i * (d - a) ** (n - i) for i in range(k + 1))
    return Fraction(total, d**n)


@pytest.mark.parametrize(("n", "k", "p"), [(300, 5, "1/50"), (14042, 250, "1/50"), (40, 0, "1/10")])
def test_binomial_tails_match_exact_fractions(n: int, k: int, p: str) -> None:
    exact = _binomial_cdf_exact(n, k, Fraction(p))
    assert eq.binomial_cdf(n, k, float(Fraction(p))) == pytest.approx(float(exact), rel=1e-9)
    tail = 1 - _binomial_cdf_exact(n, k - 1, Fraction(p)) if k else Fraction(1)
    assert eq.binomial_sf(n, k, float(Fraction(p))) == pytest.approx(float(tail), rel=1e-9)


def test_flip_bound_by_hand() -> None:
    """0 flips in 300: P(X = 0 | 2 %) = 0.98^300 = 0.00233 and the upper bound 1 - 0.05^(1/300)."""
    result = eq.rate_bound(300, 0, 0.02)
    assert result.p_upper == pytest.approx(0.98**300, rel=1e-9)
    assert result.ci[1] == pytest.approx(1 - 0.05 ** (1 / 300), rel=1e-6)
    assert result.verdict == eq.EQUIVALENT
    assert eq.rate_bound(300, 30, 0.02).verdict == eq.DIFFERENT


def test_mean_bound_against_its_formula() -> None:
    values = np.array([0.001, 0.002, 0.0015, 0.004, 0.0005, 0.003, 0.02, 0.001])
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    skew = sum((v - mean) ** 3 for v in values) / n / sd**3
    centre = mean + sd / math.sqrt(n) * skew * (2 * eq.Z**2 + 1) / (6 * math.sqrt(n))
    result = eq.mean_bound(values, 0.01)
    assert result.ci[1] == pytest.approx(centre + eq.Z * sd / math.sqrt(n), rel=1e-12)
    assert result.p_upper == pytest.approx(_normal_sf((0.01 - centre) / (sd / math.sqrt(n))))


def test_undecided_shows_its_sample_size() -> None:
    """0 of 40 discordant: Z = -√(40·0.01/0.99) = -0.6356 grows as √n and reaches 1.645 at
    40·(1.645/0.6356)² = 268 questions: about 228 more (flips decide sooner, at 149)."""
    result = eq.accuracy_tost(40, 0, 0, 0.01)
    assert result.verdict == eq.UNDECIDED
    assert result.n_more == math.ceil(40 * (eq.Z / math.sqrt(40 * 0.01 / 0.99)) ** 2 - 40)
    assert result.describe() == f"undecided — about {result.n_more:,} more questions would decide"
    assert eq.accuracy_tost(40 + result.n_more, 0, 0, 0.01).verdict == eq.EQUIVALENT
    assert eq.accuracy_tost(40 + result.n_more - 1, 0, 0, 0.01).verdict == eq.UNDECIDED
    flips = eq.rate_bound(40, 0, 0.02)
    assert flips.verdict == eq.UNDECIDED and flips.n_more is not None
    assert eq.rate_bound(40 + flips.n_more, 0, 0.02).verdict == eq.EQUIVALENT
    kl = eq.mean_bound(np.random.default_rng(0).exponential(0.008, 300), 0.01)
    assert kl.verdict == eq.UNDECIDED and kl.n_more
    assert "more questions would decide" in kl.describe()


# The false "equivalent" rate when the truth sits on the margin: at most 5 % (1,000 trials, whose
# standard error is 0.7 %, so at most 7 %).
TRIALS = 1000


@pytest.mark.parametrize(("n", "p_lost"), [(5000, 0.02), (14042, 0.0), (1000, 0.002)])
def test_tost_false_equivalence_rate_at_the_margin(n: int, p_lost: float) -> None:
    rng = np.random.default_rng(n)
    margin = 0.01
    counts = rng.multinomial(n, [p_lost, p_lost + margin, 1 - 2 * p_lost - margin], TRIALS)
    verdicts = [eq.accuracy_tost(n, int(c[0]), int(c[1]), margin).verdict for c in counts]
    assert verdicts.count(eq.EQUIVALENT) / TRIALS <= 0.07


def test_flip_bound_false_equivalence_rate_at_the_margin() -> None:
    rng = np.random.default_rng(1)
    n, margin = 2000, 0.02
    flips = rng.binomial(n, margin, TRIALS)
    rate = np.mean([eq.binomial_cdf(n, int(k), margin) < eq.ALPHA for k in flips])
    assert rate <= 0.07
    assert eq.rate_bound(n, 25, margin).verdict == eq.EQUIVALENT  # P(X <= 25) = 0.018


def test_kl_bound_false_equivalence_rate_at_the_margin() -> None:
    """Skewed per-unit KLs (lognormal σ 0.8: skewness 3.7, inside real per-question KLs' 1.3-4.5)
    with mean exactly the margin, 300 units: the skew-corrected bound stays at most 7 %, while
    the plain mean + 1.645·se bound on the same draws says `equivalent` more often."""
    rng = np.random.default_rng(2)
    margin = 0.01
    samples = rng.lognormal(math.log(margin) - 0.8**2 / 2, 0.8, (TRIALS, 300))
    rate = np.mean([eq.mean_bound(row, margin).verdict == eq.EQUIVALENT for row in samples])
    plain = np.mean(samples.mean(1) + eq.Z * samples.std(1, ddof=1) / math.sqrt(300) < margin)
    assert rate <= 0.07
    assert plain > rate + 0.01


def test_f16_against_itself_is_equivalent(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    """The fake set's quant "F16" is the baseline itself. 40 questions are too few for ±1 point
    (undecided, with the questions that would decide); margins that 40 can decide say
    equivalent, and the object survives the JSON round trip."""
    margins = eq.Margins(accuracy=0.1, flips=0.1, kl=0.01)
    for spec_margins, verdict in ((eq.DEFAULT_MARGINS, eq.UNDECIDED), (margins, eq.EQUIVALENT)):
        spec = RunSpec(fake_set, fake_questions, margins=spec_margins)
        report = [e for e in run_comparison(spec, fake_factory) if isinstance(e, RunFinished)][0]
        itself = report.report.quants[0]
        assert itself.n_flips_lost + itself.n_flips_gained == 0
        assert itself.equivalence is not None
        assert itself.equivalence["verdict"] == verdict
        noisy = report.report.quants[-1].equivalence
        assert noisy is not None and noisy["verdict"] != eq.EQUIVALENT
    undecided = eq.accuracy_tost(40, 0, 0, 0.01).n_more
    assert dataclasses.replace(spec, margins=eq.DEFAULT_MARGINS)  # the spec takes margins
    document = json.loads(report.report.to_json())
    assert document["quants"][0]["equivalence"]["criteria"]["accuracy"]["verdict"] == verdict
    assert report_from_dict(document).quants[0].equivalence == document["quants"][0]["equivalence"]
    assert undecided == 228


def test_generation_is_judged_over_turns(
    fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    """7 prompts with gold answers: accuracy and flips over the graded turns, KL over every turn's
    mean; the baseline against itself (0 discordant, KL 0) is equivalent within ±50 points."""
    from tests.test_generate import _report, _spec

    margins = eq.Margins(accuracy=0.5, flips=0.5, kl=0.01)
    report = _report(_spec(fake_set, margins=margins), fake_factory)
    found = {q.label: q.equivalence for q in report.quants}
    assert found["self"]["verdict"] == eq.EQUIVALENT
    assert list(found["self"]["criteria"]) == ["accuracy", "flips", "kl_mean"]
    assert {c["unit"] for c in found["self"]["criteria"].values()} == {"turns"}
    turn_kl = [r.kl_mean for r in report.quants[-1].rows]
    assert found["Q2_K"]["criteria"]["kl_mean"]["estimate"] == pytest.approx(np.mean(turn_kl))
    assert found["Q2_K"]["verdict"] != eq.EQUIVALENT
    document = json.loads(report.to_json())
    assert document["quants"][0]["equivalence"]["verdict"] == eq.EQUIVALENT


def test_undecided_shows_its_sample_size_in_the_report(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    """The baseline against itself on 40 questions, default margins: accuracy needs 228 more
    (above), flips 0.98^n < 0.05 from n = 149 (109 more), KL 0 is equivalent: the row says 228."""
    from ggflip.reports.choice import render_markdown
    from ggflip.reports.equivalence import verdict_text

    spec = RunSpec(fake_set, fake_questions)
    report = [e for e in run_comparison(spec, fake_factory) if isinstance(e, RunFinished)][0]
    itself = report.report.quants[0].equivalence
    assert itself is not None
    assert itself["criteria"]["flips"]["n_more"] == 149 - 40
    assert verdict_text(itself) == "undecided — about 228 more questions would decide"
    markdown = render_markdown(report.report)
    row = [line for line in markdown.splitlines() if line.startswith("| self |")][-1]
    assert "undecided — about 228 more questions would decide" in row
    header = "| model | equivalence | Δacc (±1 pt) | flips (≤ 2%) | KL mean (≤ 0.01 nats) |"
    assert header in markdown
    from ggflip.reports.pages import render_html

    page = render_html(json.loads(report.report.to_json()))
    assert "<td>undecided — about 228 more questions would decide</td>" in page
    on_edge = {"verdict": "undecided", "n_more": None, "criteria": {
        "accuracy": {"verdict": "undecided", "n_more": None, "unit": "questions"}}}
    assert verdict_text(on_edge) == "undecided — Δacc on its margin: no n decides"
