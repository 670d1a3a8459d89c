"""The engine's acceptance rate, per-subject damage and noise floor, on the fake backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import FloorFinished, RunFinished
from ggflip.choice.report import Report, report_from_dict
from ggflip.choice.row_store import RowStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.scoring import kernels
from ggflip.scoring.acceptance import acceptance_exact
from ggflip.scoring.floor import DIFFERENT, INDISTINGUISHABLE
from ggflip.tasks.prompts import render_prompt
from ggflip.tasks.questions import QuestionSet


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


def _report(spec: RunSpec, factory: FakeBackendFactory) -> Report:
    events = list(run_comparison(spec, factory))
    last = events[-1]
    assert isinstance(last, RunFinished)
    return last.report


def _exact_acceptance(
    factory: FakeBackendFactory, fake_set: ModelSet, questions: QuestionSet, index: int
) -> tuple[float, float]:
    """Exact Σ min(p, q) at the answer position, and the baseline's tail mass outside its top 8."""
    base, quant = factory.open(fake_set.baseline), factory.open(fake_set.quants[2])
    tokens = base.tokenize(render_prompt(questions.questions[index]), add_bos=True)
    request = [ScoreRequest(tuple(tokens), (len(tokens) - 1,))]
    p = kernels.log_softmax(base.logits(request)[0][0])
    q = kernels.log_softmax(quant.logits(request)[0][0])
    ids, _ = _top_k(p, 8)
    return float(acceptance_exact(p, q)), float(np.exp(_tail_log_mass(p, ids)))


class TestAcceptance:
    def test_exact_with_the_whole_vocabulary(
        self, fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
    ) -> None:
        """With K >= n_vocab the cached acceptance is the exact one."""
        report = _report(RunSpec(fake_set, fake_questions, top_k=4096), fake_factory)
        exact, _ = _exact_acceptance(fake_factory, fake_set, fake_questions, 5)
        assert report.quants[2].rows[5].acceptance == pytest.approx(exact, abs=1e-6)
        assert report.quants[0].acceptance_mean == pytest.approx(1.0, abs=1e-6)

    def test_cached_bound_with_a_small_top_k(
        self, fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
    ) -> None:
        """With K = 8 of 256 tokens the cached value is exact over the top 8 plus an estimate of
        the tail's share in [0, min(P(tail), Q(tail))], so within P(tail) of the exact value."""
        report = _report(RunSpec(fake_set, fake_questions, top_k=8), fake_factory)
        for index in (3, 5, 11):
            exact, p_tail = _exact_acceptance(fake_factory, fake_set, fake_questions, index)
            cached = report.quants[2].rows[index].acceptance
            assert abs(cached - exact) <= p_tail + 1e-6
        q2 = report.quants[2]
        values = np.array([r.acceptance for r in q2.rows])
        assert q2.acceptance_mean == pytest.approx(values.mean())
        assert q2.acceptance_p10 == pytest.approx(np.quantile(values, 0.1))
        assert q2.acceptance_p10 < q2.acceptance_mean < 1.0


def test_per_subject_sums_equal_the_totals(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    q2 = _report(RunSpec(fake_set, fake_questions), fake_factory).quants[2]
    assert {g["name"] for g in q2.by_subject} == {"algebra", "history"}
    assert sum(g["n"] for g in q2.by_subject) == q2.n == 40
    assert sum(g["flips"] for g in q2.by_subject) == q2.n_flips_lost + q2.n_flips_gained
    changes = sum(r.changed for r in q2.rows)
    assert sum(g["changes"] for g in q2.by_subject) == changes
    assert sum(g["n"] for g in q2.confidence_buckets) == 40
    assert sum(g["flips"] for g in q2.confidence_buckets) == q2.n_flips_lost + q2.n_flips_gained
    rates = [g["flip_rate"] for g in q2.by_subject]
    assert rates == sorted(rates, reverse=True)
    algebra = next(g for g in q2.by_subject if g["name"] == "algebra")
    kl = [r.kl for r in q2.rows if r.subject == "algebra"]
    assert algebra["kl_mean"] == pytest.approx(float(np.mean(kl)))


class TestFloor:
    def test_floor_row_and_verdicts(
        self, fake_set: ModelSet, fake_questions: QuestionSet, grouped_factory: FakeBackendFactory
    ) -> None:
        spec = RunSpec(fake_set, fake_questions, floor=True)
        events = list(run_comparison(spec, grouped_factory))
        floors = [e for e in events if isinstance(e, FloorFinished)]
        assert len(floors) == 1
        assert "1 question(s) per llama.cpp call instead of 4" in floors[0].method
        report = events[-1].report  # type: ignore[attr-defined]
        floor = report.floor
        assert floor.label == "F16 (floor)" and floor.n == 40
        # these fakes' logits move a little with the grouping: a small floor, not zero
        by_label = {q.label: q for q in report.quants}
        assert 0 < floor.kl_mean < by_label["Q8_0"].kl_mean / 20
        assert by_label["self"].verdict == INDISTINGUISHABLE
        assert by_label["Q2_K"].verdict == DIFFERENT
        assert "KL above" in by_label["Q2_K"].verdict_reason
        again = report_from_dict(report.to_dict())
        assert again.floor is not None and again.floor.label == "F16 (floor)"
        assert again.quants[2].verdict == DIFFERENT
        assert again.quants[2].floor_kl_p == report.quants[2].floor_kl_p < 0.05
        names = [g["name"] for g in report.quants[2].by_subject]
        assert [g["name"] for g in again.quants[2].by_subject] == names

    def test_without_floor_there_is_no_verdict(
        self, fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
    ) -> None:
        report = _report(RunSpec(fake_set, fake_questions), fake_factory)
        assert report.floor is None and report.to_dict()["floor"] is None
        assert all(q.verdict is None for q in report.quants)

    def test_floor_is_kept_with_the_cached_baseline(
        self,
        tmp_path: Path,
        fake_set: ModelSet,
        fake_questions: QuestionSet,
        fake_factory: FakeBackendFactory,
    ) -> None:
        """A second run loads the baseline for neither the baseline nor the floor."""
        spec = RunSpec(
            fake_set,
            fake_questions,
            cache_dir=tmp_path,
            run_store=RowStore.in_cache(tmp_path),
            floor=True,
        )
        first = _report(spec, fake_factory)
        fake_factory.opened.clear()
        # another set with the same baseline: its quant's rows are stored too, nothing is loaded
        other = dataclasses.replace(fake_set, quants=fake_set.quants[2:])
        second = _report(dataclasses.replace(spec, model_set=other), fake_factory)
        assert fake_factory.opened == []
        assert second.floor is not None
        assert [r.kl for r in second.floor.rows] == [r.kl for r in first.floor.rows]

    def test_floor_on_a_cached_baseline_loads_it_once(
        self,
        tmp_path: Path,
        fake_set: ModelSet,
        fake_questions: QuestionSet,
        fake_factory: FakeBackendFactory,
    ) -> None:
        spec = RunSpec(fake_set, fake_questions, cache_dir=tmp_path)
        _report(spec, fake_factory)  # the baseline goes into the cache, no floor
        fake_factory.opened.clear()
        report = _report(dataclasses.replace(spec, floor=True), fake_factory)
        assert fake_factory.opened.count("F16 (floor)") == 1
        assert "F16" not in fake_factory.opened
        assert report.baseline is not None and report.baseline.from_cache
        assert report.floor is not None and report.floor.n == 40


class TestCorpusAcceptance:
    """Corpus mode's acceptance rate against Σ min(p, q) computed from the fake models directly."""

    def _exact(self, factory: FakeBackendFactory, fake_set: ModelSet) -> np.ndarray:
        from tests.test_corpus import CTX, TEXT

        base, quant = factory.open(fake_set.baseline), factory.open(fake_set.quants[2])
        tokens = base.tokenize(TEXT, add_bos=True)
        values = []
        self.bounds: list[float] = []  # the old rule at K = 16: top 16 exact + min(P_tail, Q_tail)
        for c in range(len(tokens) // CTX):
            chunk = [0] + tokens[c * CTX + 1 : (c + 1) * CTX]
            for pos in range(CTX // 2, CTX - 1):
                request = [ScoreRequest(tuple(chunk), (pos,))]
                p = kernels.log_softmax(base.logits(request)[0][0])
                q = kernels.log_softmax(quant.logits(request)[0][0])
                values.append(float(np.minimum(np.exp(p), np.exp(q)).sum()))
                top = np.argsort(p)[::-1][:16]
                tail = np.ones(p.size, dtype=bool)
                tail[top] = False
                p_tail, q_tail = float(np.exp(p[tail]).sum()), float(np.exp(q[tail]).sum())
                top_part = float(np.minimum(np.exp(p[top]), np.exp(q[top])).sum())
                self.bounds.append(top_part + min(p_tail, q_tail))
        return np.array(values)

    def test_exact_and_bounded(self, fake_set: ModelSet, fake_factory: FakeBackendFactory) -> None:
        from tests.test_corpus import _events, _report, _spec

        exact = self._exact(fake_factory, fake_set)
        full = _report(_events(_spec(fake_set, None), fake_factory)).quants[2].stats
        assert full.acceptance_mean == pytest.approx(exact.mean(), abs=1e-6)
        sorted_exact = np.sort(exact)
        position = 0.1 * (exact.size - 1)
        low = int(position)
        p10 = sorted_exact[low] + (position - low) * (sorted_exact[low + 1] - sorted_exact[low])
        assert full.acceptance_p10 == pytest.approx(p10, abs=1e-6)
        cut = _report(_events(_spec(fake_set, None, top_k=16), fake_factory)).quants[2].stats
        # K = 16 of 256: the tail's share comes from the draws, an unbiased estimate; over these
        # positions it lands far closer to the exact mean than the old upper bound did.
        bound_gap = float(np.mean(self.bounds)) - exact.mean()
        assert bound_gap > 1e-3
        assert abs(cut.acceptance_mean - exact.mean()) < bound_gap / 4
