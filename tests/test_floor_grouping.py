"""The noise floor regroups the decodes its baseline's numbers came from, whatever batch size an
earlier run cached a baseline under: the baseline cache key holds the batch size, and the floor's
rows are named by its own grouping under that key. The fake backend's grouping noise gives a real
(small, non-zero) floor, and the verdict holds at thousands of questions."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.fake import GROUPING_NOISE, FakeBackend, FakeBackendFactory, FakeModel
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import FloorFinished, RunFinished
from ggflip.choice.row_store import RowStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.runs.events import BaselineFromCache
from ggflip.scoring.floor import DIFFERENT, INDISTINGUISHABLE
from ggflip.tasks.questions import Question, QuestionSet

FLOOR = "F16 (floor)"


class Recording(FakeBackendFactory):
    """A fake factory that keeps each opened backend, to count its llama.cpp calls."""

    def __init__(self, factory: FakeBackendFactory) -> None:
        super().__init__(factory._models)
        self.backends: dict[str, FakeBackend] = {}

    def open(self, spec: ModelSpec) -> FakeBackend:
        backend = super().open(spec)
        self.backends[spec.label] = backend
        return backend


def _run(spec: RunSpec, factory: FakeBackendFactory) -> list[object]:
    events = list(run_comparison(spec, factory))
    assert isinstance(events[-1], RunFinished)
    return events


@pytest.fixture
def recording(fake_factory: FakeBackendFactory) -> Recording:
    return Recording(fake_factory)


@pytest.fixture
def spec(tmp_path: Path, fake_set: ModelSet, fake_questions: QuestionSet) -> RunSpec:
    return RunSpec(
        dataclasses.replace(fake_set, quants=fake_set.quants[:1]),
        fake_questions,
        cache_dir=tmp_path,
        run_store=RowStore.in_cache(tmp_path),
    )


def test_floor_never_repeats_a_cached_baselines_grouping(
    spec: RunSpec, recording: Recording
) -> None:
    """A baseline cached one question per call is not this --batch-size 4 run's baseline: the run
    scores its own (4 per call) and the floor regroups that one (1 per call), never 1 against 1."""
    _run(dataclasses.replace(spec, batch_size=1), recording)
    assert recording.backends["F16"].calls == 40  # 40 questions, one per call
    recording.backends.clear()
    events = _run(dataclasses.replace(spec, batch_size=4, floor=True), recording)
    assert not any(isinstance(e, BaselineFromCache) for e in events)
    assert recording.backends["F16"].calls == 40 // 4
    assert recording.backends[FLOOR].calls == 40
    floor = next(e for e in events if isinstance(e, FloorFinished))
    assert "1 question(s) per llama.cpp call instead of 4" in floor.method


def test_floor_rows_belong_to_their_baseline(spec: RunSpec, recording: Recording) -> None:
    """The floor's rows compare it with one baseline: the same run again reuses them; a run at
    another --batch-size (another baseline, the same floor grouping) scores its own."""
    first = _run(dataclasses.replace(spec, batch_size=4, floor=True), recording)
    recording.backends.clear()
    again = _run(dataclasses.replace(spec, batch_size=4, floor=True), recording)
    assert recording.backends == {}
    floors = [e.summary for e in first + again if isinstance(e, FloorFinished)]
    assert [r.kl for r in floors[0].rows] == [r.kl for r in floors[1].rows]
    _run(dataclasses.replace(spec, batch_size=2, floor=True), recording)
    assert recording.backends["F16"].calls == 40 // 2
    assert recording.backends[FLOOR].calls == 40


def _upper_tail(n: int, k: int) -> float:
    """P(X >= k), X ~ Bin(n, 1/2), as an exact fraction summed with math.comb, then rounded."""
    return float(Fraction(sum(math.comb(n, i) for i in range(k, n + 1)), 2**n))


def test_the_floor_is_small_but_not_zero(
    spec: RunSpec, grouped_factory: FakeBackendFactory
) -> None:
    """Fakes whose logits move with the decode grouping, as llama.cpp's do: the floor's KL
    is above 0 on every question and far below a quant's; the baseline as its own quant, in the
    baseline's grouping, is bit-identical and indistinguishable."""
    self_quant = dataclasses.replace(spec.model_set.baseline, label="self")
    q8 = ModelSpec("Q8_0", Path("/m/q8.gguf"))
    model_set = dataclasses.replace(spec.model_set, quants=(self_quant, q8))
    events = _run(dataclasses.replace(spec, model_set=model_set, floor=True), grouped_factory)
    report = events[-1].report  # type: ignore[attr-defined]
    floor_kl = np.array([r.kl for r in report.floor.rows])
    assert (floor_kl > 0).all()
    assert report.floor.kl_mean < report.quants[1].kl_mean / 20
    assert max(r.kl for r in report.quants[0].rows) < 1e-9
    assert report.quants[0].verdict == INDISTINGUISHABLE
    assert report.quants[1].verdict == DIFFERENT


def test_a_4000_question_verdict_is_exact(tmp_path: Path) -> None:
    """Past 1,024 discordant questions (where 2.0**n overflowed) the run still ends in a report
    and a verdict, and both p-values equal the exact binomial tails of the rows' counts."""
    questions = QuestionSet(
        "memory",
        tuple(
            Question(f"q{i}", "s", f"question {i}", ("w1", "w2", "w3", "w4"), i % 4)
            for i in range(4000)
        ),
    )
    model_set = ModelSet(
        "fake", ModelSpec("F16", Path("/m/f16.gguf")), (ModelSpec("Q2", Path("/m/q2.gguf")),)
    )
    factory = FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(batch_noise=GROUPING_NOISE),
            "/m/q2.gguf": FakeModel(noise=2.0, batch_noise=GROUPING_NOISE),
        }
    )
    events = _run(RunSpec(model_set, questions, batch_size=64, floor=True), factory)
    report = events[-1].report  # type: ignore[attr-defined]
    quant, floor = report.quants[0], report.floor
    flipped = [(q.flip is not None, f.flip is not None) for q, f in zip(quant.rows, floor.rows)]
    b = sum(q and not f for q, f in flipped)
    c = sum(f and not q for q, f in flipped)
    assert b + c >= 1024
    above = sum(q.kl > f.kl for q, f in zip(quant.rows, floor.rows))
    below = sum(q.kl < f.kl for q, f in zip(quant.rows, floor.rows))
    assert quant.floor_flips_p == _upper_tail(b + c, b)
    assert quant.floor_kl_p == _upper_tail(above + below, above)
    assert quant.verdict == DIFFERENT
    document = report.to_dict()["quants"][0]
    assert document["verdict"] == DIFFERENT and "floor_kl_p" in document
