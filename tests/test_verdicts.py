"""Acceptance rate, per-group damage and the noise floor's verdict: pure numpy, exact values."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest

from ggflip.scoring import kernels, metrics, stats
from ggflip.scoring.acceptance import acceptance_exact, acceptance_from_top_k, acceptance_p10
from ggflip.scoring.floor import (
    DIFFERENT,
    INDISTINGUISHABLE,
    excess_flips_p,
    excess_p,
    verdict,
)
from ggflip.scoring.groups import by_bucket, by_group


def _top_k(logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids (most probable first) and their log-probs, per row, by a full sort."""
    rows = np.atleast_2d(logprobs)
    ids = np.argsort(-rows, axis=-1, kind="stable")[:, :k]
    top = np.take_along_axis(rows, ids, axis=-1)
    return (ids, top) if np.ndim(logprobs) == 2 else (ids[0], top[0])


def _tail_log_mass(logprobs: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """log of each row's probability outside `ids`, summed over the tail itself in float64."""
    rows = np.array(np.atleast_2d(logprobs), dtype=np.float64)
    np.put_along_axis(rows, np.atleast_2d(ids).astype(np.int64), -np.inf, axis=-1)
    out = kernels.logsumexp(rows, axis=-1)
    return out if np.ndim(logprobs) == 2 else out[0]


def _rows(seed: int, n_rows: int = 12, n_vocab: int = 300, noise: float = 0.7):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_rows, n_vocab)) * 3.0
    quant = base + noise * rng.standard_normal((n_rows, n_vocab)) * 3.0
    return kernels.log_softmax(base), kernels.log_softmax(quant)


class TestAcceptance:
    def test_exact_is_one_minus_total_variation(self) -> None:
        p, q = _rows(0)
        tv = 0.5 * np.abs(np.exp(p) - np.exp(q)).sum(axis=-1)
        np.testing.assert_allclose(acceptance_exact(p, q), 1.0 - tv, atol=1e-12)

    def test_identical_rows_accept_everything(self) -> None:
        p, _ = _rows(1)
        np.testing.assert_allclose(acceptance_exact(p, p), 1.0, atol=1e-12)

    @pytest.mark.parametrize("k", [1, 8, 64])
    def test_cached_bound_is_above_exact_by_at_most_the_smaller_tail(self, k: int) -> None:
        p, q = _rows(2)
        ids, p_top = _top_k(p, k)
        p_tail = _tail_log_mass(p, ids)
        q_top = np.take_along_axis(q, ids.astype(np.int64), axis=-1)
        bound = acceptance_from_top_k(p_top, p_tail, q_top)
        exact = acceptance_exact(p, q)
        # independent: the tail term's largest possible excess over the tail's own sum of minima
        q_tail = 1.0 - np.exp(q_top).sum(axis=-1)
        slack = np.minimum(np.exp(p_tail), q_tail)
        assert np.all(bound >= exact - 1e-6)
        assert np.all(bound <= exact + slack + 1e-6)
        assert np.any(bound > exact + 1e-4)  # K < n_vocab: the bound is strict somewhere

    def test_cached_bound_is_exact_with_the_whole_vocabulary(self) -> None:
        p, q = _rows(3, n_vocab=40)
        ids, p_top = _top_k(p, 40)
        q_top = np.take_along_axis(q, ids.astype(np.int64), axis=-1)
        bound = acceptance_from_top_k(p_top, np.full(len(p), -np.inf), q_top)
        np.testing.assert_allclose(bound, acceptance_exact(p, q), atol=1e-6)

    def test_p10(self) -> None:
        assert acceptance_p10(np.arange(11) / 10) == pytest.approx(0.1)
        assert math.isnan(acceptance_p10(np.array([])))


class TestGroups:
    def test_subject_sums_equal_totals_and_sorting(self) -> None:
        names = ["law", "math", "law", "art", "math", "math"]
        flipped = [True, False, True, False, True, False]
        changed = [True, True, True, False, True, False]
        kl = [0.4, 0.1, 0.2, 0.0, 0.3, 0.05]
        groups = by_group(names, flipped, changed, kl)
        assert [g["name"] for g in groups] == ["law", "math", "art"]
        assert sum(g["n"] for g in groups) == len(names)
        assert sum(g["flips"] for g in groups) == sum(flipped)
        assert sum(g["changes"] for g in groups) == sum(changed)
        law, math_, art = groups
        assert law["flip_rate"] == 1.0 and law["kl_mean"] == pytest.approx(0.3)
        assert math_["flip_rate"] == pytest.approx(1 / 3)
        assert math_["kl_mean"] == pytest.approx(0.15)
        assert art["flips"] == 0 and math.isnan(art["acceptance_mean"])
        # Wilson 95% for 2 of 2: (0.3424, 1.0)
        assert law["flip_rate_ci"][0] == pytest.approx(0.34238, abs=1e-4)

    def test_buckets_cover_every_question(self) -> None:
        confidence = [0.26, 0.45, 0.99, 1.0, 0.55, 0.91]
        flipped = [True, True, False, False, False, True]
        buckets = by_bucket(confidence, flipped, flipped, [0.1] * 6, [0.9] * 6)
        assert sum(b["n"] for b in buckets) == 6
        assert sum(b["flips"] for b in buckets) == 3
        first = buckets[0]
        assert (first["lo"], first["n"], first["flips"]) == (0.0, 1, 1)
        assert buckets[-1]["n"] == 2 and buckets[-1]["acceptance_mean"] == pytest.approx(0.9)

    @pytest.mark.parametrize("bad", [math.inf, math.nan])
    def test_a_non_finite_kl_is_kept_in_groups_and_totals_alike(self, bad: float) -> None:
        """One rule: a subject's mean and the total's both keep a non-finite KL (inf stays inf,
        nan stays nan); a subject without one keeps its finite mean; nan acceptance is skipped."""
        kl = np.array([0.1, bad, 0.3, 0.5])
        groups = by_group(["a", "a", "b", "b"], [False] * 4, [False] * 4, kl,
                          [0.9, math.nan, 0.8, 0.6])  # fmt: skip
        by_name = {g["name"]: g for g in groups}
        arrays = metrics.PairedArrays(
            *(np.zeros(4, np.int64),) * 3, kl, kl, kl, np.ones(4, bool), np.zeros(4)
        )
        total = metrics.compute("choice", arrays)["kl_mean"]
        if math.isnan(bad):
            assert math.isnan(by_name["a"]["kl_mean"]) and math.isnan(total)
        else:
            assert by_name["a"]["kl_mean"] == total == math.inf
            assert groups[0]["name"] == "a"  # an infinite KL is the most damage
        assert by_name["b"]["kl_mean"] == pytest.approx(0.4)
        assert by_name["a"]["acceptance_mean"] == pytest.approx(0.9)

    def test_lengths_must_agree(self) -> None:
        with pytest.raises(ValueError):
            by_group(["a"], [True, False], [True, False], [0.0, 0.0])


def _upper_tail(n: int, k: int) -> Fraction:
    """P(X >= k), X ~ Bin(n, 1/2), as an exact fraction, summed term by term with math.comb."""
    return Fraction(sum(math.comb(n, i) for i in range(max(k, 0), n + 1)), 2**n)


@functools.cache
def _sign_test_size(n_untied: int) -> Fraction:
    """The exact size of the one-sided 5% sign test on n untied units: P(p < 0.05) under the null,
    the largest upper tail of Bin(n, 1/2) below 1/20, summed down from k = n with exact terms."""
    whole = 2**n_untied
    term, tail = 1, 0  # C(n, n)
    for k in range(n_untied, -1, -1):
        if 20 * (tail + term) >= whole:
            break
        tail += term
        term = term * k // (n_untied - k + 1)  # C(n, k - 1)
    return Fraction(tail, whole)


def _null_pair(rng: np.random.Generator, shape: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-question KLs of a quant and a floor drawn from one heavy-tailed distribution."""
    if shape == "lognormal":  # a median of 3e-4, a few questions 100x that
        return rng.lognormal(-8, 2, n), rng.lognormal(-8, 2, n)
    if shape == "gamma mixture":  # most questions tiny, 5% hard ones carrying the mean

        def draw() -> np.ndarray:
            hard = rng.random(n) < 0.05
            return np.where(hard, rng.gamma(0.5, 1e-2, n), rng.gamma(0.3, 1e-5, n))

        return draw(), draw()
    if shape == "shared difficulty":  # a hard question is hard for both
        difficulty = rng.lognormal(-8, 2, n)
        return difficulty * rng.lognormal(0, 1, n), difficulty * rng.lognormal(0, 1, n)
    # ties: a third of the questions moved by neither (both KLs exactly 0), like short prompts
    # that batching leaves bit-identical
    moved = rng.random(n) < 2 / 3
    return moved * rng.lognormal(-8, 2, n), moved * rng.lognormal(-8, 2, n)


SHAPES = ("lognormal", "gamma mixture", "shared difficulty", "ties")
SIZES = (50, 120, 300, 1000, 3000)


class TestFloorVerdict:
    def test_exact_one_sided_p(self) -> None:
        # P(X >= 5), X ~ Bin(6, 1/2) = (6 + 1) / 64
        assert excess_flips_p(5, 1) == pytest.approx(7 / 64)
        assert excess_flips_p(6, 0) == pytest.approx(1 / 64)
        assert excess_flips_p(0, 3) == 1.0
        assert excess_flips_p(0, 0) == 1.0
        # P(X >= 2), X ~ Bin(4, 1/2) = 11/16
        assert excess_flips_p(2, 2) == pytest.approx(11 / 16)

    @pytest.mark.parametrize(
        ("b", "c"),
        [(600, 424), (424, 600), (512, 512), (513, 511), (0, 1100), (1100, 0), (2050, 1992)],
    )
    def test_exact_at_any_n(self, b: int, c: int) -> None:
        """b + c from 1,024 to 4,042, against the exact fraction (600 vs 424 overflowed before)."""
        expected = float(_upper_tail(b + c, b))
        assert excess_p(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300)
        assert stats.binomial_half_tail(b + c, b) == excess_p(b, c)
        assert stats.mcnemar_exact(b, c) == pytest.approx(
            float(min(Fraction(1), 2 * _upper_tail(b + c, max(b, c)))), rel=1e-12, abs=1e-300
        )

    def test_binomial_tail_edges(self) -> None:
        assert stats.binomial_half_tail(0, 0) == 1.0
        assert stats.binomial_half_tail(5, 6) == 0.0
        assert stats.binomial_half_tail(10, 3) == pytest.approx(1 - 56 / 1024)  # 1 + 10 + 45
        assert stats.binomial_half_tail(2000, 2000) == 0.0  # 2^-2000, below float's range

    @pytest.mark.parametrize(
        ("b", "c"), [(1326, 0), (2700, 0), (1700, 900), (600, 424), (3, 9), (0, 5)]
    )
    def test_log10_p_is_finite_where_p_underflows(self, b: int, c: int) -> None:
        """log10 of the exact tail, from the exact fraction's numerator and denominator (Python's
        log10 of an integer of any size), also where the float p-value is 0.0."""
        exact = _upper_tail(b + c, b)
        expected = math.log10(exact.numerator) - math.log10(exact.denominator)
        assert stats.binomial_half_tail_log10(b + c, b) == pytest.approx(expected, abs=1e-9)
        mcnemar = min(Fraction(1), 2 * _upper_tail(b + c, max(b, c)))
        assert stats.mcnemar_exact_log10(b, c) == pytest.approx(
            math.log10(mcnemar.numerator) - math.log10(mcnemar.denominator), abs=1e-9
        )

    def test_a_p_value_below_floats_range_is_written_from_its_log(self) -> None:
        # 2^-1326 = 10^-399.1658 (1326 x log10 2): 6.83e-400, never "0"
        assert stats.p_text(0.0, stats.binomial_half_tail_log10(1326, 1326)) == "6.83e-400"
        assert stats.p_text(0.03125, math.log10(0.03125)) == "0.0312"
        assert stats.p_text(0.0, -299.99999) == "1e-300"  # 10^0.00001 = 1.00002
        assert stats.p_text(0.0, -300.0000001) == "1e-300"  # 9.9999998e-301 rounds up
        v = verdict(np.ones(1326, bool), np.zeros(1326, bool), np.ones(1326), np.zeros(1326))
        assert v.flips_p == 0.0 and "p = 6.83e-400, 1326 vs 0" in v.reason

    def test_same_flips_and_kl_like_the_floor_is_indistinguishable(self) -> None:
        quant = np.array([1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
        floor = np.array([1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
        quant_kl = np.array([1, 2, 3, 4, 5, 6, 7, 8]) * 1e-3
        floor_kl = np.array([2, 1, 4, 3, 6, 5, 8, 7]) * 1e-3
        v = verdict(quant, floor, quant_kl, floor_kl)
        assert v.verdict == INDISTINGUISHABLE
        assert (v.n_quant_only, v.n_floor_only) == (1, 1)
        assert v.flips_p == pytest.approx(3 / 4)
        assert (v.n_kl_above, v.n_kl_below) == (4, 4)
        assert v.kl_p == pytest.approx(163 / 256)  # P(X >= 4), X ~ Bin(8, 1/2)
        assert v.kl_mean_over_floor == pytest.approx(1.0)

    def test_many_more_flips_is_different(self) -> None:
        quant = np.zeros(40, dtype=bool)
        quant[:7] = True  # 7 flips the floor does not have
        floor = np.zeros(40, dtype=bool)
        kl = np.linspace(1e-3, 2e-3, 40)
        v = verdict(quant, floor, kl, kl)
        assert v.verdict == DIFFERENT
        assert v.flips_p == pytest.approx(1 / 128)
        assert (v.n_kl_above, v.n_kl_below, v.kl_p) == (0, 0, 1.0)  # equal KLs are ties
        assert "flips above" in v.reason and "KL" not in v.reason

    def test_the_kl_threshold_is_the_sign_test_at_5_percent(self) -> None:
        """Larger on 9 of 10 units: p = 11/1024, different; on 8 of 10: p = 56/1024, not.

        The means point the other way in both cases, so a rule on the means (the quant's mean
        above the floor's, or above the floor's interval) gets both wrong."""
        none = np.zeros(10, dtype=bool)
        floor_kl = np.full(10, 1e-3)
        nine = np.full(10, 1.1e-3)
        nine[0], floor_kl_nine = 0.0, floor_kl.copy()
        floor_kl_nine[0] = 1.0  # the floor's one large KL puts its mean far above the quant's
        v = verdict(none, none, nine, floor_kl_nine)
        assert v.verdict == DIFFERENT and v.kl_p == pytest.approx(11 / 1024)
        assert "KL above" in v.reason and "flips above" not in v.reason
        assert v.kl_mean_over_floor < 0.01
        eight = np.full(10, 0.9e-3)
        eight[:8] = 1.1e-3
        eight[0] = 5.0  # one large KL puts the quant's mean 500x above the floor's
        v = verdict(none, none, eight, floor_kl)
        assert (v.n_kl_above, v.n_kl_below) == (8, 2)
        assert v.verdict == INDISTINGUISHABLE and v.kl_p == pytest.approx(56 / 1024)
        assert v.kl_mean_over_floor > 400

    def test_non_finite_kl_compares_as_floats_do(self) -> None:
        none = np.zeros(4, dtype=bool)
        quant_kl = np.array([math.inf, math.inf, math.nan, 1.0])
        floor_kl = np.array([1.0, math.inf, 1.0, math.nan])
        v = verdict(none, none, quant_kl, floor_kl)
        assert (v.n_kl_above, v.n_kl_below) == (1, 0)  # inf > 1; inf vs inf and nan are ties

    def test_unpaired_units_are_refused(self) -> None:
        with pytest.raises(ValueError):
            verdict(np.zeros(3, bool), np.zeros(4, bool), np.zeros(3), np.zeros(3))
        with pytest.raises(ValueError):
            verdict(np.zeros(3, bool), np.zeros(3, bool), np.zeros(3), np.zeros(4))

    def test_null_false_positive_rate_is_at_most_5_percent(self) -> None:
        """1,000 null trials (quant and floor from one heavy-tailed distribution, 50 to 3,000
        questions): the KL test calls "different" at its exact size (<= 5%), within ±2%."""
        rng = np.random.default_rng(20240611)
        rejected, size = 0, Fraction(0)
        for trial in range(1000):
            n = SIZES[trial % len(SIZES)]
            quant_kl, floor_kl = _null_pair(rng, SHAPES[(trial // len(SIZES)) % len(SHAPES)], n)
            v = verdict(np.zeros(n, bool), np.zeros(n, bool), quant_kl, floor_kl)
            rejected += v.verdict == DIFFERENT
            size += _sign_test_size(int((quant_kl != floor_kl).sum()))
        expected = float(size / 1000)
        assert 0.03 < expected <= 0.05
        assert abs(rejected / 1000 - expected) <= 0.02

    @pytest.mark.parametrize("n", [50, 300])
    def test_a_worse_quant_is_called_different(self, n: int) -> None:
        """A quant whose KL is 3x the floor's on every question (shared difficulty, its own noise
        on top): different in at least 95% of 200 trials."""
        rng = np.random.default_rng(n)
        called = 0
        for _ in range(200):
            quant_kl, floor_kl = _null_pair(rng, "shared difficulty", n)
            v = verdict(np.zeros(n, bool), np.zeros(n, bool), 3 * quant_kl, floor_kl)
            called += v.verdict == DIFFERENT
        assert called >= 190
