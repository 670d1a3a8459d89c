"""The run store with several rows per question: cloze and few-shot runs stopped mid-way resume to
the same report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.cache import BaselineCache
from ggflip.choice.events import Resumed
from ggflip.choice.resume import run_progress
from ggflip.choice.row_store import RowStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.runs.events import ModelLoading
from ggflip.tasks.fewshot import shot_picker
from ggflip.tasks.prompts import PromptSet, render_prompts
from ggflip.tasks.questions import Question, QuestionSet
from ggflip.tasks.registry import get_task
from tests.resume_helpers import assert_same, run_report, stop_after

LONG = 5000  # words: more tokens than the fake backend's n_ctx of 4096


def _cloze(long_index: int | None = None) -> tuple[QuestionSet, PromptSet]:
    """15 cloze questions whose choices span one to four words (so a question owns 3 to 9 scored
    rows)."""
    choices = (
        ("red apple", "blue sky", "green grass now"),
        ("one", "two words", "three more words here"),
    )
    questions = tuple(
        Question(
            f"c{i}",
            "",
            ("long " * LONG if i == long_index else "") + f"what is item {i} here",
            choices[i % 2],
            i % 3,
        )
        for i in range(15)
    )
    qs = QuestionSet("memory", questions)
    return qs, render_prompts(get_task("hellaswag"), qs.questions, lambda q: (), 0)


def _few_shot(fake_questions: QuestionSet) -> PromptSet:
    picker = shot_picker(2, fake_questions.questions, None, by_subject=True, where="memory")
    return render_prompts(get_task("mmlu"), fake_questions.questions, picker, 2)


@pytest.mark.parametrize(("label", "n"), [("F16", 5), ("Q8_0", 8), ("Q2_K", 14)])
@pytest.mark.parametrize("cached", [True, False])
def test_stopped_cloze_run_resumes_to_the_same_report(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_factory: FakeBackendFactory,
    label: str,
    n: int,
    cached: bool,
) -> None:
    questions, prompts = _cloze(long_index=4)
    base = RunSpec(fake_set, questions, task="hellaswag", prompts=prompts, batch_size=2)
    _, reference = run_report(base, fake_factory)
    assert (
        reference.mode == "cloze" and reference.quants[0].rows[0].n_tokens > 3
    )  # several rows per question
    assert [s.index for s in reference.skipped_questions] == [
        4
    ]  # too long for n_ctx: skipped, not an error
    # without a cache dir the baseline lives only in the run store and is rebuilt from its records
    spec = dataclasses.replace(
        base, cache_dir=tmp_path if cached else None, run_store=RowStore.in_cache(tmp_path)
    )
    stop_after(spec, fake_factory, label, n)
    fake_factory.opened.clear()
    events, resumed = run_report(spec, fake_factory)
    restored = {e.label: e.n_restored for e in events if isinstance(e, Resumed)}
    stored = -(-n // 2) * 2  # each batch of 2 is stored as soon as it is scored ...
    assert restored[label] == stored - (
        label != "F16" and stored > 4
    )  # ... but a quant stores no baseline skip
    assert resumed.complete
    assert_same(reference, resumed)
    # models finished before the stop (the baseline too, from the cache or its stored records) are
    # not loaded again
    finished = [m.label for m in fake_set.models][: [m.label for m in fake_set.models].index(label)]
    assert not set(finished) & set(fake_factory.opened)


def test_finished_cloze_run_reruns_from_the_store_alone(
    tmp_path: Path, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    questions, prompts = _cloze(long_index=9)
    spec = RunSpec(
        fake_set,
        questions,
        task="hellaswag",
        prompts=prompts,
        batch_size=4,
        run_store=RowStore.in_cache(tmp_path),
    )
    _, first = run_report(spec, fake_factory)
    assert run_progress(spec, fake_factory) == {"F16": 15, "self": 14, "Q8_0": 14, "Q2_K": 14}
    fake_factory.opened.clear()
    events, second = run_report(spec, fake_factory)
    assert fake_factory.opened == [] and not any(isinstance(e, ModelLoading) for e in events)
    assert_same(first, second)


def test_stopped_few_shot_run_resumes_to_the_same_report(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    prompts = _few_shot(fake_questions)
    assert prompts.n_shots == 2 and all(item.prefix_chars for item in prompts.items)
    base = RunSpec(fake_set, fake_questions, prompts=prompts, batch_size=3)
    _, reference = run_report(base, fake_factory)
    spec = dataclasses.replace(base, cache_dir=tmp_path, run_store=RowStore.in_cache(tmp_path))
    stop_after(spec, fake_factory, "Q8_0", 20)
    _, resumed = run_report(spec, fake_factory)
    assert_same(reference, resumed)
    assert resumed.n_shots == 2


def test_zero_and_few_shot_runs_do_not_share_stored_rows(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    store = RowStore.in_cache(tmp_path)
    zero = RunSpec(fake_set, fake_questions, cache_dir=tmp_path, run_store=store)
    few = dataclasses.replace(zero, prompts=_few_shot(fake_questions))
    run_report(zero, fake_factory)
    assert set(run_progress(few, fake_factory).values()) == {0}
    _, few_report = run_report(few, fake_factory)
    assert few_report.n_shots == 2 and len(list((tmp_path / "baselines").glob("*.json"))) == 2


def test_cloze_baseline_cache_marks_skips_by_empty_rows(
    tmp_path: Path, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    questions, prompts = _cloze(long_index=2)
    spec = RunSpec(
        fake_set,
        questions,
        task="hellaswag",
        prompts=prompts,
        cache_dir=tmp_path,
        run_store=RowStore.in_cache(tmp_path),
    )
    _, first = run_report(spec, fake_factory)
    key = next((tmp_path / "baselines").glob("*.json")).stem
    loaded = BaselineCache(tmp_path).load(
        key, len(questions.questions), spec.resolved_top_k, spec.resolved_tail_samples
    )
    assert loaded is not None
    scores, skips = loaded
    assert (
        set(skips) == {2}
        and scores.n_rows(2) == 0
        and all(scores.n_rows(i) >= 3 for i in range(15) if i != 2)
    )
    _, second = run_report(dataclasses.replace(spec, resume=False), fake_factory)
    assert_same(first, second)
