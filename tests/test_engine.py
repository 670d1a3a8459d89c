"""The engine on the fake backend: events, comparisons, the baseline cache and the guards."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.fake import FAKE_VOCAB, FakeBackendFactory, FakeModel
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import (
    BaselineFinished,
    QuantFinished,
    QuestionScored,
    RunFinished,
    RunStarted,
)
from ggflip.choice.report import Report
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.errors import ModelFileError, VocabMismatchError
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.scoring import kernels
from ggflip.tasks.questions import QuestionSet


def _run(spec: RunSpec, factory: FakeBackendFactory) -> tuple[list[object], Report]:
    events = list(run_comparison(spec, factory))
    last = events[-1]
    assert isinstance(last, RunFinished)
    return events, last.report


def test_event_sequence(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    events, report = _run(RunSpec(fake_set, fake_questions), fake_factory)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted"
    assert kinds[1:3] == ["ModelLoading", "ModelLoaded"]
    assert kinds.count("QuestionScored") == 4 * 40
    assert kinds.count("QuantFinished") == 3
    assert kinds.count("BaselineFinished") == 1
    scored = [e for e in events if isinstance(e, QuestionScored) and e.label == "Q8_0"]
    assert [e.done for e in scored] == list(range(1, 41))
    assert all(e.row is not None for e in scored)
    assert report.complete


def test_baseline_against_itself_is_identical(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    _, report = _run(RunSpec(fake_set, fake_questions), fake_factory)
    self_summary = report.quants[0]
    assert self_summary.kl_max < 1e-6
    assert self_summary.flips == 0
    assert self_summary.answer_changes == 0
    assert self_summary.same_top == 1.0
    assert self_summary.accuracy == report.baseline.accuracy  # type: ignore[union-attr]


def test_more_noise_means_more_kl_and_changes(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    _, report = _run(RunSpec(fake_set, fake_questions), fake_factory)
    by_label = {q.label: q for q in report.quants}
    assert by_label["Q8_0"].kl_mean < by_label["Q2_K"].kl_mean
    assert by_label["Q8_0"].answer_changes <= by_label["Q2_K"].answer_changes
    assert by_label["Q2_K"].answer_changes > 0


def _by_hand(
    factory: FakeBackendFactory, baseline: ModelSpec, quant: ModelSpec, questions: QuestionSet
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Each question scored alone, straight from the fake logits: the baseline's and the quant's
    option probabilities (each letter as " X" or "X", renormalized) and the full-vocabulary KL."""
    from ggflip.backends.base import ScoreRequest
    from ggflip.tasks.prompts import render_prompt

    base, other = factory.open(baseline), factory.open(quant)
    letters = [[FAKE_VOCAB.index(f" {c}"), FAKE_VOCAB.index(c)] for c in "ABCD"]

    def options(logprobs: np.ndarray) -> np.ndarray:
        sums = np.array([kernels.logsumexp(logprobs[ids]) for ids in letters])
        return np.exp(sums - kernels.logsumexp(sums))

    out = []
    for question in questions.questions:
        tokens = base.tokenize(render_prompt(question), add_bos=True)
        request = [ScoreRequest(tuple(tokens), (len(tokens) - 1,))]
        base_lp = kernels.log_softmax(base.logits(request)[0][0])
        quant_lp = kernels.log_softmax(other.logits(request)[0][0])
        kl = float(kernels.kl_divergence(base_lp, quant_lp))
        out.append((options(base_lp), options(quant_lp), kl))
    return out


def test_rows_match_the_summary(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    """Every row and the summary against the fake logits read by hand, one question at a time
    (no grouping noise, so a question scored alone gives what the run's batches gave); with
    K >= n_vocab the cache holds the whole distribution, so the KL is exact."""
    factory = fake_factory
    _, report = _run(RunSpec(fake_set, fake_questions), factory)
    q2 = report.quants[2]
    expected = _by_hand(factory, fake_set.baseline, fake_set.quants[2], fake_questions)
    golds = [q.gold for q in fake_questions.questions]
    base_ok = [int(np.argmax(b)) == g for (b, _, _), g in zip(expected, golds)]
    quant_ok = [int(np.argmax(q)) == g for (_, q, _), g in zip(expected, golds)]
    lost = sum(b and not q for b, q in zip(base_ok, quant_ok))
    gained = sum(q and not b for b, q in zip(base_ok, quant_ok))
    assert lost + gained > 0  # the check below has flips to count
    assert (q2.n_flips_lost, q2.n_flips_gained) == (lost, gained)
    assert q2.flips == pytest.approx((lost + gained) / 40)
    assert q2.kl_mean == pytest.approx(math.fsum(kl for _, _, kl in expected) / 40, rel=1e-5)
    for row, (base_probs, quant_probs, kl) in zip(q2.rows, expected):
        assert row.base_probs == pytest.approx(base_probs.tolist(), rel=1e-6)
        assert row.base_choice == int(np.argmax(base_probs))
        assert row.quant_choice == int(np.argmax(quant_probs))
        ordered = sorted(base_probs)
        assert row.top_margin == pytest.approx(ordered[-1] - ordered[-2], rel=1e-6)
        assert row.kl == pytest.approx(kl, rel=1e-5)
    assert sum(b["n"] for b in q2.margin_buckets) == 40


def test_baseline_cache_hit_skips_loading(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    spec = RunSpec(fake_set, fake_questions, cache_dir=tmp_path)
    _, first = _run(spec, fake_factory)
    fake_factory.opened.clear()
    events, second = _run(spec, fake_factory)
    assert any(isinstance(e, BaselineFromCache) for e in events)
    assert "F16" not in fake_factory.opened
    assert second.baseline.from_cache  # type: ignore[union-attr]
    assert second.quants[2].rows == first.quants[2].rows
    assert len(list((tmp_path / "baselines").glob("*.npz"))) == 1


def test_cache_misses_when_questions_or_model_change(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    _run(RunSpec(fake_set, fake_questions, cache_dir=tmp_path), fake_factory)
    fewer = QuestionSet("memory", fake_questions.questions[:10])
    fake_factory.opened.clear()
    events, _ = _run(RunSpec(fake_set, fewer, cache_dir=tmp_path), fake_factory)
    assert "F16" in fake_factory.opened
    changed_model = FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(noise=0.01, noise_seed=9),
            "/m/q8.gguf": FakeModel(noise=0.05),
            "/m/q2.gguf": FakeModel(noise=0.6),
        }
    )
    events, _ = _run(RunSpec(fake_set, fake_questions, cache_dir=tmp_path), changed_model)
    assert not any(isinstance(e, BaselineFromCache) for e in events)
    assert len(list((tmp_path / "baselines").glob("*.npz"))) == 3


def test_damaged_cache_is_recomputed(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    spec = RunSpec(fake_set, fake_questions, cache_dir=tmp_path)
    _, first = _run(spec, fake_factory)
    data = next((tmp_path / "baselines").glob("*.npz"))
    data.write_bytes(data.read_bytes()[:100])
    fake_factory.opened.clear()
    events, second = _run(spec, fake_factory)
    assert not any(isinstance(e, BaselineFromCache) for e in events)
    assert "F16" in fake_factory.opened
    assert second.quants[1].rows == first.quants[1].rows


def test_vocabulary_mismatch_refused_before_scoring(
    fake_set: ModelSet, fake_questions: QuestionSet
) -> None:
    other_tokens = FAKE_VOCAB[:-1] + ("different",)
    factory = FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(),
            "/m/q8.gguf": FakeModel(vocab=other_tokens),
            "/m/q2.gguf": FakeModel(),
        }
    )
    with pytest.raises(
        VocabMismatchError, match="q8.gguf: same vocabulary size .* but different tokens"
    ):
        list(run_comparison(RunSpec(fake_set, fake_questions), factory))
    assert factory.opened == []
    smaller = FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(),
            "/m/q8.gguf": FakeModel(),
            "/m/q2.gguf": FakeModel(vocab=FAKE_VOCAB[:-5]),
        }
    )
    with pytest.raises(
        VocabMismatchError, match=f"q2.gguf: vocabulary of {len(FAKE_VOCAB) - 5} tokens"
    ):
        list(run_comparison(RunSpec(fake_set, fake_questions), smaller))


def test_missing_model_refused_before_scoring(
    fake_set: ModelSet, fake_questions: QuestionSet
) -> None:
    factory = FakeBackendFactory({"/m/f16.gguf": FakeModel(), "/m/q8.gguf": FakeModel()})
    with pytest.raises(ModelFileError, match="q2.gguf: model file not found"):
        list(run_comparison(RunSpec(fake_set, fake_questions), factory))
    assert factory.opened == []


def test_closing_the_generator_stops_between_questions(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    events = run_comparison(RunSpec(fake_set, fake_questions, batch_size=1), fake_factory)
    seen = 0
    for event in events:
        if isinstance(event, QuestionScored) and event.label == "Q8_0":
            seen += 1
            if seen == 3:
                events.close()
                break
    assert "Q2_K" not in fake_factory.opened


def test_scripted_answers_give_exact_flips(fake_questions: QuestionSet) -> None:
    """Biasing letter tokens scripts answers: baseline always 'A', quant always 'B'."""
    a, b = FAKE_VOCAB.index(" A"), FAKE_VOCAB.index(" B")
    factory = FakeBackendFactory({"/b": FakeModel(bias={a: 50.0}), "/q": FakeModel(bias={b: 50.0})})
    model_set = ModelSet("s", ModelSpec("base", Path("/b")), (ModelSpec("q", Path("/q")),))
    _, report = _run(RunSpec(model_set, fake_questions), factory)
    quant = report.quants[0]
    # gold cycles A,B,C,D: baseline right on A-questions (10), quant right on B-questions (10)
    assert report.baseline.accuracy == pytest.approx(0.25)  # type: ignore[union-attr]
    assert quant.accuracy == pytest.approx(0.25)
    assert quant.delta_accuracy == 0
    assert (quant.n_flips_lost, quant.n_flips_gained) == (10, 10)
    assert quant.flips == pytest.approx(0.5)
    assert quant.answer_changes == 1.0
    assert quant.mcnemar_p == 1.0
    assert all(r.top_margin > 0.99 for r in quant.rows)
    assert quant.margin_buckets[-1]["flip_rate"] == pytest.approx(0.5)
    assert not math.isnan(quant.kl_options_mean) and quant.kl_options_mean > 10


def test_event_types_are_frozen() -> None:
    for cls in (RunStarted, ModelLoading, ModelLoaded, BaselineFinished, QuantFinished):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "hits"),
    [
        ({"llama": {"flash_attn": True}}, False),
        ({"llama": {"n_ubatch": 64}}, False),
        ({"llama": {"n_batch": 512}}, False),
        ({"llama": {"n_seq_max": 2}}, False),
        ({"llama": {"repack": False}}, False),
        ({"llama": {"n_gpu_layers": 99}}, False),
        ({"batch_size": 2}, False),
        ({"share_prefixes": False}, False),
        ({"tail_samples": 8}, False),
        ({"llama": {"n_threads": 1}}, True),
        ({"llama": {"use_mmap": False}}, True),
    ],
)
def test_every_setting_that_moves_logits_keys_the_baseline_cache(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
    change: dict[str, object],
    hits: bool,
) -> None:
    """A second run with one setting changed reuses the cached baseline only if the setting
    cannot change a logit; the report says how the baseline was computed."""
    first = RunSpec(fake_set, fake_questions, cache_dir=tmp_path)
    _run(first, fake_factory)
    llama = dataclasses.replace(fake_set.baseline.llama, **change.get("llama", {}))  # type: ignore[arg-type]
    changed_set = dataclasses.replace(
        fake_set, baseline=dataclasses.replace(fake_set.baseline, llama=llama)
    )
    run_level = {k: v for k, v in change.items() if k != "llama"}
    second = dataclasses.replace(first, model_set=changed_set, **run_level)  # type: ignore[arg-type]
    events, report = _run(second, fake_factory)
    assert any(isinstance(e, BaselineFromCache) for e in events) is hits
    assert report.baseline is not None and report.baseline.from_cache is hits
    used = report.baseline.computed_with
    assert used["llama"]["flash_attn"] is llama.flash_attn
    assert used["llama"]["n_ubatch"] == llama.n_ubatch and "n_threads" not in used["llama"]
    assert used["batch_size"] == second.batch_size and used["build"] == {"backend": "fake"}


def test_the_llama_build_keys_the_baseline_cache(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = RunSpec(fake_set, fake_questions, cache_dir=tmp_path)
    _run(spec, fake_factory)
    monkeypatch.setattr(fake_factory, "build_info", lambda: {"backend": "fake", "version": "2"})
    events, _ = _run(spec, fake_factory)
    assert not any(isinstance(e, BaselineFromCache) for e in events)


def test_every_llama_setting_is_keyed_or_excluded_with_a_reason() -> None:
    from ggflip.backends.numerics import EXCLUDED_SETTINGS, NUMERIC_SETTINGS
    from ggflip.config.models_toml import LlamaSettings

    names = {f.name for f in dataclasses.fields(LlamaSettings)}
    assert set(NUMERIC_SETTINGS) | set(EXCLUDED_SETTINGS) == names
    assert not set(NUMERIC_SETTINGS) & set(EXCLUDED_SETTINGS)
