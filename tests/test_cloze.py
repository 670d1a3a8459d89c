"""Cloze scoring on the fake backend against hand-computed log-likelihoods, its KL, and the
cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.fake import FakeBackend, FakeBackendFactory
from ggflip.choice.answers import ChoiceScore, compare, score_cloze
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.report import Report
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.runs.events import BaselineFromCache
from ggflip.scoring import kernels
from ggflip.scoring.topk import normalize
from ggflip.tasks.prompts import render_prompts
from ggflip.tasks.questions import Question, QuestionSet
from ggflip.tasks.registry import get_task


def _questions() -> QuestionSet:
    choices = (
        ("red apple", "blue sky", "green grass w7"),
        ("one", "two words", "three more words"),
    )
    return QuestionSet(
        "memory",
        tuple(
            Question(f"c{i}", "", f"what is item {i} here", choices[i % 2], i % 3)
            for i in range(12)
        ),
    )


def _run(spec: RunSpec, factory: FakeBackendFactory) -> tuple[list[object], Report]:
    events = list(run_comparison(spec, factory))
    assert isinstance(events[-1], RunFinished)
    return events, events[-1].report


def _hand_loglik(
    backend: FakeBackend, context: str, continuation: str
) -> tuple[float, list[np.ndarray]]:
    """Sum of log p(token | prefix) over the continuation's tokens, one backend call per token."""
    context_tokens = backend.tokenize(context, add_bos=True)
    whole = backend.tokenize(context + continuation, add_bos=True)
    total, rows = 0.0, []
    for position in range(len(context_tokens), len(whole)):
        logits = backend.logits([ScoreRequest(tuple(whole[:position]), (position - 1,))])[0][
            0
        ].astype(np.float64)
        logprobs = logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()
        total += float(logprobs[whole[position]])
        rows.append(logprobs)
    return total, rows


def test_score_cloze_sums_and_normalizes_per_character() -> None:
    rows = [
        np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])),
        np.log(np.array([[0.2, 0.2, 0.6]])),
    ]
    rows = [normalize(block) for block in rows]
    score = score_cloze(rows, [(0, 1), (2,)], [4, 2], "norm")
    assert score.sums == pytest.approx([np.log(0.5) + np.log(0.8), np.log(0.6)])
    assert score.norms == pytest.approx([(np.log(0.5) + np.log(0.8)) / 4, np.log(0.6) / 2])
    assert score.choice == int(np.argmax(score.norms))
    assert score_cloze(rows, [(0, 1), (2,)], [4, 2], "sum").option_logprobs == pytest.approx(
        score.sums
    )
    assert list(score.top_tokens) == [0, 1, 2]


def test_norm_rule_answers_per_character_but_probabilities_come_from_the_sums() -> None:
    """Summed LLs -2 and -17 over 5 and 40 characters: per character -0.4 < -0.425, so the
    per-character rule picks choice 0 whose continuation is e^15 (3.3 million) times likelier."""
    question = Question("q", "", "which", ("short", "x" * 40), 1)
    base_sums, quant_sums = np.array([-2.0, -17.0]), np.array([-3.0, -2.5])
    lengths = np.array([5.0, 40.0])

    def score(sums: np.ndarray) -> ChoiceScore:
        return ChoiceScore(sums / lengths, np.array([0]), sums, sums / lengths)

    row = compare(0, question, score(base_sums), score(quant_sums), (0.0, 0.0))
    # answers by the per-character rule: base -0.4 vs -0.425, quant -0.6 vs -0.0625
    assert (row.base_choice, row.quant_choice, row.flip) == (0, 1, "incorrect_to_correct")
    # base: p0 = 1 / (1 + e^-15), by hand; quant: p0 = 1 / (1 + e^0.5)
    p0 = 1.0 / (1.0 + np.exp(-15.0))
    q0 = 1.0 / (1.0 + np.exp(0.5))
    assert row.base_probs == pytest.approx([p0, 1.0 - p0], rel=1e-12)
    assert row.base_probs[1] == pytest.approx(3.059e-7, rel=1e-3)
    assert row.quant_probs == pytest.approx([q0, 1.0 - q0], rel=1e-12)
    assert row.top_margin == pytest.approx(2.0 * p0 - 1.0, rel=1e-12)
    assert row.confidence == pytest.approx(p0, rel=1e-12)
    expected_kl = p0 * np.log(p0 / q0) + (1.0 - p0) * np.log((1.0 - p0) / (1.0 - q0))
    assert row.kl_options == pytest.approx(expected_kl, rel=1e-9)
    # as p0 -> 1 the option KL tends to -ln q0 = ln(1 + e^0.5)
    assert row.kl_options == pytest.approx(np.log1p(np.exp(0.5)), abs=1e-5)


@pytest.mark.parametrize("rule", ["norm", "sum"])
def test_engine_cloze_answers_match_hand_computed_logliks(
    fake_set: ModelSet, fake_factory: FakeBackendFactory, rule: str
) -> None:
    import dataclasses

    task = dataclasses.replace(get_task("arc_easy"), answer_rule=rule)
    questions = _questions()
    prompts = render_prompts(task, questions.questions, lambda q: (), 0)
    _, report = _run(
        RunSpec(fake_set, questions, task="arc_easy", prompts=prompts, top_k=512), fake_factory
    )
    base = fake_factory.open(fake_set.baseline)
    q2 = fake_factory.open(fake_set.quants[2])
    row = report.quants[2].rows[4]
    item = prompts.items[4]
    base_sums, quant_sums, kls = [], [], []
    for context, continuation in zip(item.contexts, item.continuations):
        base_ll, base_rows = _hand_loglik(base, context, continuation)
        quant_ll, quant_rows = _hand_loglik(q2, context, continuation)
        base_sums.append(base_ll)
        quant_sums.append(quant_ll)
        kls += [float(kernels.kl_divergence(b, q)) for b, q in zip(base_rows, quant_rows)]
    lengths = np.array([len(c) for c in questions.questions[4].choices], dtype=float)
    assert row.base_sums == pytest.approx(base_sums, rel=1e-6)
    assert row.quant_sums == pytest.approx(quant_sums, rel=1e-6)
    assert row.base_norms == pytest.approx(list(np.array(base_sums) / lengths), rel=1e-6)
    rule_scores = np.array(base_sums) / (lengths if rule == "norm" else 1.0)
    assert row.base_choice == int(np.argmax(rule_scores))
    assert row.quant_choice == int(
        np.argmax(np.array(quant_sums) / (lengths if rule == "norm" else 1.0))
    )
    # K >= n_vocab for the fake vocabulary, so the cached KL is exact: the mean over every
    # continuation token
    assert (
        row.n_tokens == len(kls) == 2 + 2 + 3
    )  # fake tokens are words: "red apple", "blue sky", "green grass w7"
    assert row.kl == pytest.approx(float(np.mean(kls)), rel=1e-5)
    # probabilities, margin and option KL from the hand-computed sums under either rule
    base_probs = np.exp(np.array(base_sums) - np.logaddexp.reduce(base_sums))
    quant_probs = np.exp(np.array(quant_sums) - np.logaddexp.reduce(quant_sums))
    assert row.base_probs == pytest.approx(base_probs.tolist(), rel=1e-5)
    assert row.quant_probs == pytest.approx(quant_probs.tolist(), rel=1e-5)
    ordered = np.sort(base_probs)
    assert row.top_margin == pytest.approx(ordered[-1] - ordered[-2], rel=1e-5, abs=1e-9)
    expected_kl = float(np.sum(base_probs * np.log(base_probs / quant_probs)))
    assert row.kl_options == pytest.approx(expected_kl, rel=1e-4, abs=1e-9)
    assert report.mode == "cloze" and report.answer_rule == rule
    assert set(report.quants[2].by_rule) == {"sum", "norm"}
    assert report.quants[2].by_rule[rule]["accuracy"] == pytest.approx(report.quants[2].accuracy)


def test_cloze_self_comparison_is_exact_and_cached(
    tmp_path: Path, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    questions = _questions()
    prompts = render_prompts(get_task("hellaswag"), questions.questions, lambda q: (), 0)
    spec = RunSpec(
        fake_set, questions, task="hellaswag", prompts=prompts, cache_dir=tmp_path, top_k=16
    )
    _, first = _run(spec, fake_factory)
    assert first.cache_top_k == 16
    self_summary = first.quants[0]
    assert self_summary.kl_max < 1e-6 and self_summary.flips == 0 and self_summary.same_top == 1.0
    assert first.quants[2].kl_mean > first.quants[1].kl_mean > 0
    fake_factory.opened.clear()
    events, second = _run(spec, fake_factory)
    assert (
        any(isinstance(e, BaselineFromCache) for e in events) and "F16" not in fake_factory.opened
    )
    assert second.quants[2].rows == first.quants[2].rows


def test_shots_change_the_cache_key(
    tmp_path: Path, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    questions = _questions()
    task = get_task("arc_easy")
    plain = render_prompts(task, questions.questions, lambda q: (), 0)
    shot = (Question("s", "", "a shot question", ("x y", "z"), 0),)
    with_shot = render_prompts(task, questions.questions, lambda q: shot, 1)
    assert with_shot.version == "arc_easy-cloze-v1+1shot" and plain.digest() != with_shot.digest()
    _run(RunSpec(fake_set, questions, prompts=plain, cache_dir=tmp_path), fake_factory)
    events, _ = _run(
        RunSpec(fake_set, questions, prompts=with_shot, cache_dir=tmp_path), fake_factory
    )
    assert not any(isinstance(e, BaselineFromCache) for e in events)
    assert len(list((tmp_path / "baselines").glob("*.npz"))) == 2


def test_cloze_defaults_to_a_short_top_k_and_more_tail_draws(
    fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    """A cloze run keeps K = 64 and S = 128 unless told, a letter run K = 512 and S = 32, and
    the report says which (docs/metrics.md, cache exactness:
    the S that brings cloze's tail under 5 %)."""
    questions = _questions()
    cloze_prompts = render_prompts(get_task("hellaswag"), questions.questions, lambda q: (), 0)
    cloze = RunSpec(fake_set, questions, task="hellaswag", prompts=cloze_prompts)
    letter = RunSpec(fake_set, questions)
    assert (cloze.resolved_top_k, cloze.resolved_tail_samples) == (64, 128)
    assert (letter.resolved_top_k, letter.resolved_tail_samples) == (512, 32)
    _, report = _run(cloze, fake_factory)
    assert report.baseline is not None
    assert report.baseline.computed_with["tail_samples"] == 128
    told = RunSpec(fake_set, questions, prompts=cloze_prompts, top_k=16, tail_samples=8)
    assert (told.resolved_top_k, told.resolved_tail_samples) == (16, 8)
