"""The noise floor regroups the decodes its baseline's numbers came from, whatever batch size an
earlier run cached a baseline under: the baseline cache key holds the batch size, and the floor's
rows are named by its own grouping under that key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackend, FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import FloorFinished, RunFinished
from ggflip.choice.runstore import RunStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.runs.events import BaselineFromCache
from ggflip.tasks.questions import QuestionSet

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
        run_store=RunStore.in_cache(tmp_path),
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
