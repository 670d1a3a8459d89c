"""Acceptance rate, per-group damage and the noise floor's verdict: pure numpy, exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ggflip.scoring import kernels
from ggflip.scoring.acceptance import acceptance_exact, acceptance_from_top_k, acceptance_p10
from ggflip.scoring.floor import DIFFERENT, INDISTINGUISHABLE, excess_flips_p, verdict
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

    def test_lengths_must_agree(self) -> None:
        with pytest.raises(ValueError):
            by_group(["a"], [True, False], [True, False], [0.0, 0.0])


class TestFloorVerdict:
    def test_exact_one_sided_p(self) -> None:
        # P(X >= 5), X ~ Bin(6, 1/2) = (6 + 1) / 64
        assert excess_flips_p(5, 1) == pytest.approx(7 / 64)
        assert excess_flips_p(6, 0) == pytest.approx(1 / 64)
        assert excess_flips_p(0, 3) == 1.0
        assert excess_flips_p(0, 0) == 1.0
        # P(X >= 2), X ~ Bin(4, 1/2) = 11/16
        assert excess_flips_p(2, 2) == pytest.approx(11 / 16)

    def test_same_flips_and_kl_inside_the_floor_is_indistinguishable(self) -> None:
        quant = np.array([1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
        floor = np.array([1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
        v = verdict(quant, floor, 0.01, 0.012, (0.008, 0.016))
        assert v.verdict == INDISTINGUISHABLE
        assert (v.n_quant_only, v.n_floor_only) == (1, 1)
        assert v.flips_p == pytest.approx(3 / 4)
        assert v.kl_mean_over_floor == pytest.approx(0.01 / 0.012)

    def test_many_more_flips_is_different(self) -> None:
        quant = np.zeros(40, dtype=bool)
        quant[:7] = True  # 7 flips the floor does not have
        floor = np.zeros(40, dtype=bool)
        v = verdict(quant, floor, 0.01, 0.01, (0.005, 0.015))
        assert v.verdict == DIFFERENT
        assert v.flips_p == pytest.approx(1 / 128)
        assert "flips above" in v.reason and "KL" not in v.reason

    def test_kl_above_the_interval_is_different(self) -> None:
        none = np.zeros(10, dtype=bool)
        v = verdict(none, none, 0.05, 0.01, (0.005, 0.015))
        assert v.verdict == DIFFERENT
        assert "KL mean" in v.reason and "flips above" not in v.reason
        assert v.kl_mean_over_floor == pytest.approx(5.0)

    def test_unpaired_flags_are_refused(self) -> None:
        with pytest.raises(ValueError):
            verdict(np.zeros(3, bool), np.zeros(4, bool), 0.0, 0.0, (0.0, 0.0))
