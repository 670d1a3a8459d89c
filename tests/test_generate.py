"""Generation mode on the fake backend: engine, teacher-forced metrics, cache, resume, answers."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.fake import FakeBackendFactory, FakeModel
from ggflip.config.models_toml import ModelSet
from ggflip.errors import DataError, UsageError
from ggflip.generate.compare import first_divergence, teacher_forced
from ggflip.generate.engine import run_generation
from ggflip.generate.events import ChatTemplateDiffers, GenFinished, TurnGenerated
from ggflip.generate.extract import extract, flexible, gold_answer, strict
from ggflip.generate.records import BaseUnit, decode_unit, encode_unit
from ggflip.generate.report import index_quantile
from ggflip.generate.spec import GenSpec
from ggflip.runs.events import BaselineFromCache
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import baseline_normalize
from ggflip.store.rowdb import RowStore
from ggflip.tasks.generation import GEN_TASKS, GenItem, load_items

DATA = Path(__file__).parent / "data"


def _spec(model_set: ModelSet, tmp: Path | None = None, **kwargs: object) -> GenSpec:
    items = tuple(GenItem(f"q{i}", (f"w{i} w{i + 1} w{i + 2}",), "w7") for i in range(7))
    defaults: dict[str, object] = dict(
        task=GEN_TASKS["prompts"], items=items, source="test", max_new_tokens=6, batch_size=3
    )
    if tmp is not None:
        defaults.update(cache_dir=tmp, run_store=RowStore(tmp / "runs.sqlite"))
    defaults.update(kwargs)
    return GenSpec(model_set, **defaults)  # type: ignore[arg-type]


def _report(spec: GenSpec, factory: FakeBackendFactory):  # type: ignore[no-untyped-def]
    events = list(run_generation(spec, factory))
    assert isinstance(events[-1], GenFinished)
    return events[-1].report


class TestEngine:
    def test_self_is_identical_and_noise_drifts(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        """The baseline against itself: same texts, no divergence, KL 0; more noise, more KL."""
        report = _report(_spec(fake_set), fake_factory)
        by_label = {q.label: q for q in report.quants}
        self_ = by_label["self"]
        assert self_.same_text == 1.0 and self_.first_divergence.never == 7
        assert self_.kl_max < 1e-6 and self_.top1_agreement == 1.0
        assert self_.n_flips_lost == self_.n_flips_gained == 0
        assert by_label["Q8_0"].kl_mean < by_label["Q2_K"].kl_mean
        assert by_label["Q2_K"].same_text < 1.0
        diverged = {r.first_divergence for r in by_label["Q2_K"].rows}
        spread = by_label["Q2_K"].first_divergence
        assert {spread.median, spread.p10, spread.p90} <= diverged
        document = json.loads(report.to_json())
        assert document["schema"] == "ggflip.generate/1"
        assert "token_kl" not in document["quants"][0]["rows"][0]

    def test_cache_hit_does_not_load_the_baseline(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        first = _report(_spec(fake_set, tmp_path), fake_factory)
        fake_factory.opened.clear()
        events = list(run_generation(_spec(fake_set, tmp_path), fake_factory))
        assert any(isinstance(e, BaselineFromCache) for e in events)
        assert "F16" not in fake_factory.opened
        assert [q.rows for q in events[-1].report.quants] == [q.rows for q in first.quants]  # type: ignore[attr-defined]
        other = _spec(fake_set, tmp_path, max_new_tokens=5)
        fake_factory.opened.clear()
        list(run_generation(other, fake_factory))
        assert "F16" in fake_factory.opened  # another decoding setting misses

    def test_kill_and_resume_equals_uninterrupted(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        whole = _report(_spec(fake_set), fake_factory)
        spec = _spec(fake_set, tmp_path)
        events = run_generation(spec, fake_factory)
        for event in events:
            if isinstance(event, TurnGenerated) and event.label == "Q8_0" and event.done == 3:
                break
        events.close()
        resumed = _report(spec, fake_factory)
        assert [q.rows for q in resumed.quants] == [q.rows for q in whole.quants]

    def test_skips_a_prompt_that_leaves_no_room(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        long_item = GenItem("long", (" ".join(["w1"] * 4093),))
        spec = _spec(fake_set)
        spec = GenSpec(**{**spec.__dict__, "items": spec.items + (long_item,)})
        report = _report(spec, fake_factory)
        assert [s.id for s in report.skipped] == ["long"]
        assert all(q.n == 7 for q in report.quants)


class TestTeacherForcing:
    def test_kl_top1_and_delta_p_by_hand(self) -> None:
        """Full-vocabulary record (K = vocab): KL, top-1 and Δp match a float64 softmax."""
        rng = np.random.default_rng(0)
        base_logits = rng.standard_normal((5, 12)).astype(np.float32) * 2
        quant_logits = (base_logits + rng.standard_normal((5, 12)) * 0.5).astype(np.float32)
        tokens = tuple(int(t) for t in np.argmax(base_logits, axis=-1))
        norm, record = baseline_normalize(base_logits, 12, 0, rng)
        unit = BaseUnit(
            (0,), 0, tokens, "", "length", (1.0,) * 5,
            PositionRecord.of(record), norm.logprobs_at(np.asarray(tokens)),
        )  # fmt: skip
        forced = teacher_forced(unit, quant_logits)

        def logsoftmax(x: np.ndarray) -> np.ndarray:
            x = x.astype(np.float64)
            return (
                x
                - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
                - x.max(-1, keepdims=True)
            )

        p, q = logsoftmax(base_logits), logsoftmax(quant_logits)
        expected_kl = (np.exp(p) * (p - q)).sum(-1)
        np.testing.assert_allclose(forced.kl, expected_kl, rtol=1e-5, atol=1e-7)
        assert list(forced.top1) == list(np.argmax(quant_logits, -1) == np.asarray(tokens))
        rows = np.arange(5)
        expected_dp = np.exp(q[rows, tokens]) - np.exp(p[rows, tokens])
        np.testing.assert_allclose(forced.delta_p, expected_dp, atol=1e-6)
        assert decode_unit(encode_unit(unit)).tokens == tokens

    def test_first_divergence(self) -> None:
        assert first_divergence([1, 2, 3], [1, 2, 3]) is None
        assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
        assert first_divergence([1, 2, 3], [1, 2]) == 2

    def test_divergence_quantiles_are_observed_indexes(self) -> None:
        """Sorted 1 1 2 3 4 5 6 9: the median is 3 (4 of 8 at or below), not 3.5; p90 is 9 (8 of 8),
        not 6.9; p10 is 1."""
        indexes = [3, 1, 4, 1, 5, 9, 2, 6]
        assert [index_quantile(indexes, q) for q in (0.5, 0.1, 0.9)] == [3.0, 1.0, 9.0]
        assert np.isnan(index_quantile([], 0.5))
        rng = np.random.default_rng(7)
        for _ in range(200):
            drawn = sorted(rng.integers(0, 50, size=int(rng.integers(1, 12))).tolist())
            q = float(rng.choice([0.1, 0.25, 0.5, 0.9, rng.random()]))
            # the smallest observed value whose share of values at or below it reaches q
            expected = next(v for v in drawn if sum(x <= v for x in drawn) >= q * len(drawn))
            assert index_quantile(drawn, q) == expected


class TestAnswers:
    def test_gsm8k_rules_on_real_rows(self) -> None:
        items = load_items(GEN_TASKS["gsm8k"], str(DATA / "gsm8k-test-rows.jsonl"))
        golds = [gold_answer("strict", item.answer) for item in items]
        assert golds == ["18", "3", "70000"]
        # the gold answer itself is a correct generation under both rules
        for item, gold in zip(items, golds):
            assert extract("strict", item.answer or "", None) == gold
            assert extract("flexible", item.answer or "", None) == gold
        assert strict("so 5 apples.\n#### 1,000") == "1,000"
        assert extract("strict", "#### 1,000.", None) == "1000"
        assert strict("#### $1,000") == "[invalid]"  # lm-eval's strict rule allows no "$"
        assert strict("The answer is 12.") == "[invalid]"
        assert flexible("3 + 4 = 7, so she has $7.") == "$7."
        assert extract("flexible", "3 + 4 = 7, so she has $7.", None) == "7"

    def test_match_rule(self) -> None:
        assert extract("match", "It is Paris, of course.", "Paris") == "paris"
        assert extract("match", "Parisian food", "Paris") == "[invalid]"
        assert extract("match", "He has 24 pencils.", "24") == "24"

    def test_bad_rows_are_one_line_errors(self, tmp_path: Path) -> None:
        bad = tmp_path / "p.jsonl"
        bad.write_text('{"prompt": "hi"}\n{"text": "no prompt"}\n')
        with pytest.raises(DataError, match=r"p.jsonl:2: 'prompt'"):
            load_items(GEN_TASKS["prompts"], str(bad))
        empty = tmp_path / "e.txt"
        empty.write_text("\n\n")
        with pytest.raises(DataError, match="no prompts"):
            load_items(GEN_TASKS["prompts"], str(empty))
        blocks = tmp_path / "b.txt"
        blocks.write_text("first\nprompt\n\nsecond\n")
        assert [i.turns for i in load_items(GEN_TASKS["prompts"], str(blocks))] == [
            ("first\nprompt",),
            ("second",),
        ]
        turns = load_items(GEN_TASKS["mt_bench"], str(DATA / "mt-bench-rows.jsonl"))
        assert [len(i.turns) for i in turns] == [2, 2] and turns[0].id == "81"


def test_chat_without_a_template_is_one_error(
    fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    with pytest.raises(DataError, match="no tokenizer.chat_template"):
        list(run_generation(_spec(fake_set, chat=True), fake_factory))


def test_a_quant_with_another_chat_template_is_named(
    fake_set: ModelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Under --chat every model is asked through the baseline's template; a quant whose own
    differs gets a warning naming it, an event and the report's `chat_template_differs`."""
    template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    factory = FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(chat_template=template),
            "/m/q8.gguf": FakeModel(noise=0.05, chat_template=template),
            "/m/q2.gguf": FakeModel(noise=0.6, chat_template=template + "!"),
        }
    )
    with caplog.at_level(logging.WARNING, logger="ggflip"):
        events = list(run_generation(_spec(fake_set, chat=True), factory))
    assert [e.label for e in events if isinstance(e, ChatTemplateDiffers)] == ["Q2_K"]
    assert events[-1].report.chat_template_differs == ("Q2_K",)  # type: ignore[attr-defined]
    assert json.loads(events[-1].report.to_json())["chat_template_differs"] == ["Q2_K"]  # type: ignore[attr-defined]
    assert [r.message.split(" ")[0] for r in caplog.records] == ["Q2_K"]
    plain = list(run_generation(_spec(fake_set), factory))  # without --chat no template is used
    assert plain[-1].report.chat_template_differs == ()  # type: ignore[attr-defined]


def test_generation_options_resolve_like_the_cli(tmp_path: Path) -> None:
    """`ggflip run --task prompts` flags and the TUI's GenOptions give the same spec; --limit
    takes a seed-0 sample unless --first; --baseline/--quant name the files as in multiple
    choice; a half-given pair or a bad number is one UsageError."""
    from ggflip.cli.generate import gen_options
    from ggflip.cli.main import build_parser
    from ggflip.generate.setup import GenOptions, resolve_gen_spec

    (tmp_path / "models.toml").write_text(
        '[sets.fake]\nbaseline = { path = "/m/f16.gguf", label = "F16" }\n'
        'quants = [ { path = "/m/q8.gguf", label = "Q8_0" } ]\n'
    )
    models = tmp_path / "models.toml"
    argv = ["run", "--models", str(models), "--task", "prompts", "--limit", "3", "--no-cache"]
    options = gen_options(build_parser().parse_args([*argv, "--max-new-tokens", "5"]))
    assert options == GenOptions(
        task="prompts", models_path=models, limit=3, max_new_tokens=5, no_cache=True
    )
    spec = resolve_gen_spec(options)
    # random.Random(0).sample(range(30), 3), in file order: items 12, 24 and 27 of the 30.
    assert [i.id for i in spec.items] == ["fact-01", "task-03", "task-06"]
    assert spec.selection == "3 of 30 prompts, a sample (seed 0; --first for the first 3)"
    assert spec.new_tokens == 5 and spec.model_set.name == "fake"
    first = resolve_gen_spec(gen_options(build_parser().parse_args([*argv, "--first"])))
    assert [i.id for i in first.items] == ["math-01", "math-02", "math-03"]
    assert first.selection == "the first 3 of 30 prompts (--first)"
    (tmp_path / "F16.gguf").write_bytes(b"")
    (tmp_path / "Q8_0.gguf").write_bytes(b"")
    files = [*argv[:1], "--task", "prompts", "--no-cache", "--baseline"]
    named = gen_options(
        build_parser().parse_args(
            [*files, str(tmp_path / "F16.gguf"), "--quant", str(tmp_path / "Q8_0.gguf")]
        )
    )
    from_files = resolve_gen_spec(named)
    assert [m.label for m in from_files.model_set.models] == ["F16", "Q8_0"]
    assert from_files.selection == "all 30 prompts"
    with pytest.raises(UsageError, match="at least one --quant"):
        resolve_gen_spec(gen_options(build_parser().parse_args([*files, "a.gguf"])))
    with pytest.raises(UsageError, match="--first takes the first prompts"):
        resolve_gen_spec(replace(options, first=True, seed=1))
    with pytest.raises(UsageError, match="--max-new-tokens must be positive"):
        resolve_gen_spec(GenOptions(task="prompts", models_path=models, max_new_tokens=0))


def test_restored_turns_are_yielded_like_generated_ones(
    fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
) -> None:
    """A resumed run yields a row event for every turn, stored or new, so a front end's list
    is whole (pieces included)."""
    spec = _spec(fake_set, tmp_path)
    events = run_generation(spec, fake_factory)
    for event in events:
        if isinstance(event, TurnGenerated) and event.label == "Q8_0" and event.done == 6:
            break
    events.close()
    rows = [
        e.row
        for e in run_generation(spec, fake_factory)
        if isinstance(e, TurnGenerated) and e.label == "Q8_0" and e.row is not None
    ]
    assert [r.index for r in rows] == list(range(7))
    assert all(len(r.base_pieces) == r.n_tokens for r in rows)
    assert all(len(r.quant_pieces) == r.quant_n_tokens for r in rows)


def test_top_margin_equals_a_sort_of_the_row() -> None:
    """argmax and its lead over the runner-up, the best at either end and tied, against a sort."""
    from ggflip.backends.greedy import top_margin

    rng = np.random.default_rng(5)
    rows = [rng.standard_normal(1000).astype(np.float32) for _ in range(3)]
    rows[1][0] = 9.0  # best first
    rows[2][-1] = 9.0  # best last
    tied = rng.standard_normal(1000).astype(np.float32)
    tied[[10, 700]] = 9.0
    for row in [*rows, tied]:
        ordered = np.sort(row)
        best, margin = top_margin(row)
        assert best == int(np.argmax(row))
        assert margin == float(ordered[-1] - ordered[-2])
    assert top_margin(tied)[1] == 0.0


def test_top_margins_of_a_batch_equal_a_sort_of_each_row_and_leave_the_rows_as_they_were() -> None:
    """The batched choice (every live sequence's row at once) against a sort of each row."""
    from ggflip.backends.greedy import top_margins

    rng = np.random.default_rng(6)
    rows = rng.standard_normal((4, 1000)).astype(np.float32)
    rows[1, 0] = rows[2, -1] = 9.0  # best first, best last
    rows[3, [10, 700]] = 9.0  # tied
    before = rows.copy()
    tokens, margins = top_margins(rows)
    assert np.array_equal(rows, before)
    for row, token, margin in zip(before, tokens, margins):
        ordered = np.sort(row)
        assert token == int(np.argmax(row))
        assert margin == float(ordered[-1] - ordered[-2])
    assert margins[3] == 0.0
