"""Runs whose prompts share no prefix group their questions into llama.cpp calls by prompt length
(each sequence on a KV stream of its own, llama.cpp splits a call into ubatches of as many tokens
from every sequence, so prompts of one call should be about as long as each other); runs that
share prefixes keep question order. Progress counts questions whatever the order, and the report
keeps question order."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import ScoreRequest
from ggflip.backends.fake import FakeBackend, FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import QuestionScored, RunFinished
from ggflip.choice.resume import computed_with
from ggflip.choice.row_store import RowStore
from ggflip.choice.spec import RunSpec, kv_layout
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.tasks.prompts import render_prompts
from ggflip.tasks.questions import Question, QuestionSet
from ggflip.tasks.registry import get_task

N = 37  # not a multiple of the batch size: the last call holds one question


class _Recording(FakeBackend):
    """A fake backend that keeps the token counts of each call's requests."""

    def __init__(self, inner: FakeBackend, calls: list[list[int]]) -> None:
        self.__dict__.update(inner.__dict__)
        self._record = calls

    def logits(self, requests: Sequence[ScoreRequest]) -> list[NDArray[np.float32]]:
        self._record.append([len(r.tokens) for r in requests])
        return super().logits(requests)


class _Factory(FakeBackendFactory):
    def __init__(self, inner: FakeBackendFactory) -> None:
        super().__init__(inner._models)
        self.calls: dict[str, list[list[int]]] = {}

    def open(self, spec: ModelSpec) -> FakeBackend:
        return _Recording(super().open(spec), self.calls.setdefault(spec.label, []))


def _questions() -> QuestionSet:
    """N questions whose prompts are 1..N words longer than the shortest, in shuffled order."""
    extra = list(range(N))
    random.Random(0).shuffle(extra)
    return QuestionSet(
        "lengths",
        tuple(
            Question(f"q{i}", "algebra", "word " * (2 + extra[i]), ("w1", "w2", "w3", "w4"), i % 4)
            for i in range(N)
        ),
    )


def _spec(tmp_path: Path, fake_set: ModelSet, shots: int = 0) -> RunSpec:
    questions = _questions()
    prompts = None
    if shots:
        task = get_task("mmlu")
        prompts = render_prompts(task, questions.questions, lambda q: questions.questions, shots)
    return RunSpec(
        dataclasses.replace(fake_set, quants=fake_set.quants[1:2]),
        questions,
        prompts=prompts,
        cache_dir=tmp_path,
        run_store=RowStore.in_cache(tmp_path),
    )


def test_a_zero_shot_run_decodes_prompts_of_like_length_together(
    tmp_path: Path, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    factory = _Factory(fake_factory)
    spec = _spec(tmp_path, fake_set)
    events = list(run_comparison(spec, factory))
    assert isinstance(events[-1], RunFinished)
    for label in ("F16", "Q8_0"):
        calls = factory.calls[label]
        assert [len(call) for call in calls] == [4] * (N // 4) + [N % 4]
        flat = [n for call in calls for n in call]
        # every prompt once, shortest first: each call's prompts are neighbours in length
        assert flat == sorted(flat) and len(set(flat)) == N
        progress = [e.done for e in events if isinstance(e, QuestionScored) and e.label == label]
        assert progress == list(range(1, N + 1))
    assert factory.calls["F16"] == factory.calls["Q8_0"]  # the same groups for every model
    report = events[-1].report
    assert [row.index for row in report.quants[0].rows] == list(range(N))
    assert computed_with(kv_layout(spec), factory)["grouped_by"] == "length"


def test_runs_that_share_prefixes_keep_question_order(
    tmp_path: Path, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    factory = _Factory(fake_factory)
    spec = _spec(tmp_path, fake_set, shots=2)
    assert isinstance(list(run_comparison(spec, factory))[-1], RunFinished)
    tails = [n for call in factory.calls["F16"] for n in call]
    # question order: the shuffled lengths, not sorted ones
    assert tails != sorted(tails)
    assert "grouped_by" not in computed_with(kv_layout(spec), factory)
    one_per_call = dataclasses.replace(_spec(tmp_path, fake_set), batch_size=1)
    assert "grouped_by" not in computed_with(kv_layout(one_per_call), factory)
