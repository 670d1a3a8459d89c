"""The noise floor regroups the decodes the baseline's numbers came from, also when the baseline
comes from a cache made under another --batch-size."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackend, FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import FloorFinished, RunFinished
from ggflip.choice.runstore import RunStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet, ModelSpec
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


def test_floor_regroups_the_cached_baseline_not_this_run(
    tmp_path: Path, fake_set: ModelSet, fake_questions: QuestionSet, recording: Recording
) -> None:
    """Baseline cached one question per call; a --batch-size 1 → 4 run's floor packs 4, not 1."""
    one_set = dataclasses.replace(fake_set, quants=fake_set.quants[:1])
    spec = RunSpec(one_set, fake_questions, cache_dir=tmp_path, batch_size=1)
    _run(spec, recording)
    assert recording.backends["F16"].calls == 40  # 40 questions, one per call
    events = _run(dataclasses.replace(spec, batch_size=4, floor=True), recording)
    floor = next(e for e in events if isinstance(e, FloorFinished))
    assert recording.backends[FLOOR].calls == 40 // 4
    assert floor.method.startswith("baseline scored again with 4 question(s) per llama.cpp call")
    assert "instead of 1" in floor.method
    assert events[-1].report.floor_method == floor.method  # type: ignore[attr-defined]


def test_floor_is_shared_by_runs_of_other_batch_sizes(
    tmp_path: Path, fake_set: ModelSet, fake_questions: QuestionSet, recording: Recording
) -> None:
    """The floor's rows are keyed by its own grouping: --batch-size 2 after 4 scores no floor."""
    spec = RunSpec(
        fake_set,
        fake_questions,
        cache_dir=tmp_path,
        run_store=RunStore.in_cache(tmp_path),
        batch_size=4,
        floor=True,
    )
    first = _run(spec, recording)
    recording.backends.clear()
    again = _run(dataclasses.replace(spec, batch_size=2), recording)
    assert FLOOR not in recording.backends and "F16" not in recording.backends
    kl = [[r.kl for r in e.summary.rows] for e in first + again if isinstance(e, FloorFinished)]
    assert kl[0] == kl[1]


def test_an_entry_without_its_batch_size_is_said(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    recording: Recording,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cached baseline without its grouping: the floor assumes this run's, and says so."""
    spec = RunSpec(fake_set, fake_questions, cache_dir=tmp_path)
    _run(spec, recording)
    (meta_path,) = (tmp_path / "baselines").glob("*.json")
    document = json.loads(meta_path.read_text())
    assert document.pop("batch_size") == 4
    del document["meta_sha256"]  # an older ggflip's entry: the same document without the field
    body = json.dumps(document, sort_keys=True).encode()
    meta_path.write_text(json.dumps({**document, "meta_sha256": hashlib.sha256(body).hexdigest()}))
    recording.backends.clear()
    with caplog.at_level(logging.WARNING):
        events = _run(dataclasses.replace(spec, floor=True), recording)
    assert "F16" not in recording.backends  # the entry was used, not rebuilt
    floor = next(e for e in events if isinstance(e, FloorFinished))
    assert "instead of 4" in floor.method
    assert any("does not record its batch size" in r.getMessage() for r in caplog.records)
