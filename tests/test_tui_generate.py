"""The generation run view on the fake backend: table, turn list, the two texts, export, routing."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select, Static

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.setup import RunOptions
from ggflip.generate.compare import TurnRow
from ggflip.generate.engine import run_generation
from ggflip.generate.report import GenReport, flip_of
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.scoring import formats
from ggflip.tui.command import tui_gen_options
from ggflip.tui.corpus_live import kl_style
from ggflip.tui.gen_detail import GenDetailScreen
from ggflip.tui.gen_live import DIVERGENCE_STYLE, token_texts
from ggflip.tui.gen_view import GenScreen
from ggflip.tui.setup import SetupScreen
from ggflip.tui.views import ResumeScreen
from tests.tui_helpers import (
    FAKE_MODELS,
    GatedFactory,
    fake_app,
    named_rows,
    run_async,
    settle,
    write_fake_set,
)

DATA = Path(__file__).parent / "data"
PROMPTS = "gen-tui-prompts.jsonl"


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_fake_set(tmp_path)
    shutil.copy(DATA / PROMPTS, tmp_path / PROMPTS)
    return tmp_path


def gen_options(**changes: Any) -> GenOptions:
    """Twelve prompts with gold answers (some flip under the fakes), eight new tokens each."""
    fields: dict[str, Any] = dict(task="prompts", data=PROMPTS, no_cache=True, max_new_tokens=8)
    return GenOptions(**{**fields, **changes})


def engine_report(options: GenOptions) -> GenReport:
    """The report of the same run through the engine directly, as `ggflip run --json` does."""
    events = list(run_generation(resolve_gen_spec(options), FakeBackendFactory(FAKE_MODELS)))
    report = events[-1].report  # type: ignore[attr-defined]
    assert isinstance(report, GenReport)
    return report


def gen_app(folder: Path, options: GenOptions, factory: FakeBackendFactory | None = None) -> Any:
    setup = RunOptions(models_path=Path("models.toml"), no_cache=True)
    app = fake_app(setup, folder, factory=factory)
    app.gen = options
    return app


def gen_screen(app: Any) -> GenScreen:
    screens = [s for s in app.screen_stack if isinstance(s, GenScreen)]
    assert len(screens) == 1
    return screens[0]


def listed(screen: GenScreen) -> list[str]:
    table = screen.query_one("#turns", DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@run_async
async def test_summary_table_equals_the_engine_report(fake_dir: Path) -> None:
    """Each quant's row shows the engine's accuracy, flips, same text, KL and top-1."""
    report = engine_report(gen_options())
    app = gen_app(fake_dir, gen_options())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = gen_screen(app)
        assert screen.live is not None and screen.live.state == "finished"
        rows = named_rows(screen.query_one("#summary", DataTable))
        for quant in report.quants:
            cells = rows[quant.label]
            # accuracy with its count: correct answers of the turns that have a gold answer
            graded = [r for r in quant.rows if r.gold is not None]
            rule = report.answer_rule
            assert rule is not None
            correct = sum(r.answers[rule][1] == r.gold for r in graded)
            assert cells["acc"] == f"{100 * correct / len(graded):.1f}% {correct}/{len(graded)}"
            assert cells["c→i/i→c"] == f"{quant.n_flips_lost}/{quant.n_flips_gained}"
            assert cells["same text"] == f"{100 * quant.same_text:.1f}%"
            assert cells["KL mean"] == formats.sig(quant.kl_mean)
            assert cells["top-1"] == f"{100 * quant.top1_agreement:.1f}%"
            assert cells["done"] == f"{quant.n}/{quant.n}"
        assert report.quants[1].n_flips_lost + report.quants[1].n_flips_gained > 0


@run_async
async def test_turn_list_filters_and_sorts(fake_dir: Path) -> None:
    """The list starts on Q8_0's flips; d cycles to one direction, diverged texts, every turn;
    s sorts by KL and by earliest divergence."""
    report = engine_report(gen_options())
    rows = {q.label: q.rows for q in report.quants}
    app = gen_app(fake_dir, gen_options())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = gen_screen(app)
        q8 = rows["Q8_0"]
        assert screen.selected == "Q2_K"  # the list follows the quant being generated
        screen.query_one("#summary", DataTable).move_cursor(row=1)
        await pilot.pause()
        assert screen.selected == "Q8_0"
        assert listed(screen) == [r.id for r in q8 if flip_of(r, "match")]
        await pilot.press("d")  # correct → incorrect only
        lost = [r.id for r in q8 if flip_of(r, "match") == "correct_to_incorrect"]
        assert listed(screen) == lost
        await pilot.press("d", "d")  # texts that differ
        assert listed(screen) == [r.id for r in q8 if r.first_divergence is not None]
        await pilot.press("d")  # every turn
        assert listed(screen) == [r.id for r in q8]
        await pilot.press("s")
        assert listed(screen) == [r.id for r in sorted(q8, key=lambda r: -r.kl_mean)]
        await pilot.press("s")
        by_divergence = sorted(
            q8, key=lambda r: float("inf") if r.first_divergence is None else r.first_divergence
        )
        assert listed(screen) == [r.id for r in by_divergence]


@run_async
async def test_prompts_without_answers_list_diverged_turns_by_kl(fake_dir: Path) -> None:
    """Without gold answers there is nothing to flip: the list shows diverged texts, largest KL
    first."""
    (fake_dir / "plain.txt").write_text(
        "\n\n".join(f"w{i} w{i + 5} w{3 * i}" for i in range(6)) + "\n"
    )
    options = gen_options(data="plain.txt")
    report = engine_report(options)
    app = gen_app(fake_dir, options)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = gen_screen(app)
        assert (screen.shown, screen.sort) == ("diverged", "kl")
        q2 = [r for r in report.quants[1].rows if r.first_divergence is not None]
        assert listed(screen) == [r.id for r in sorted(q2, key=lambda r: -r.kl_mean)]
        cells = [str(c) for c in screen.query_one("#summary", DataTable).get_row("Q2_K")]
        assert cells[3] == "–"


def _spans(text: Text) -> list[tuple[str, str]]:
    return [(text.plain[s.start : s.end], str(s.style)) for s in text.spans]


def test_token_texts_shade_by_kl_and_mark_the_divergence() -> None:
    """Baseline tokens carry their KL's shade; the first differing token is marked in both."""
    row = TurnRow(
        index=0, id="p", turn=0, gold=None, answers={}, base_text="ab c", quant_text="ab d",
        base_truncated=False, quant_truncated=False, n_tokens=3, quant_n_tokens=4,
        n_prompt_tokens=7,
        first_divergence=2, kl_mean=0.0, kl_max=0.0, top1_agreement=1.0, delta_p_sum=0.0,
        delta_p_sq_sum=0.0, token_kl=(0.0005, 0.3, 2.0), base_pieces=("a", "b", " c"),
        quant_pieces=("a", "b", " d", "e"),
    )  # fmt: skip
    base, quant = token_texts(row)
    assert base.plain == "ab c" and quant.plain == "ab de"
    assert _spans(base) == [
        ("b", kl_style(0.3)),
        (" c", f"{kl_style(2.0)} {DIVERGENCE_STYLE}"),
    ]  # the first token's KL < 0.001 has no shade
    assert _spans(quant) == [(" d", DIVERGENCE_STYLE), ("e", "dim")]
    prefix = TurnRow(**{**row.__dict__, "quant_pieces": ("a", "b"), "first_divergence": 2})
    assert token_texts(prefix)[1].plain == "ab∎"  # the quant stopped where the baseline went on


@run_async
async def test_enter_opens_both_texts_side_by_side(fake_dir: Path) -> None:
    """Enter on a turn: its prompt and both generations, the baseline's shaded by KL."""
    report = engine_report(gen_options())
    app = gen_app(fake_dir, gen_options())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = gen_screen(app)
        screen.query_one("#turns", DataTable).focus()
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, GenDetailScreen)
        first = next(r for r in report.quants[1].rows if flip_of(r, "match"))
        assert detail.row == first
        assert "".join(first.base_pieces) == first.base_text
        base = detail.query_one("#gen-base-text", Static).visual
        assert base.plain == first.base_text  # type: ignore[union-attr]
        await pilot.press("escape")
        assert app.screen is screen


@run_async
async def test_export_writes_the_generate_json_and_markdown(fake_dir: Path) -> None:
    """e writes the `ggflip run --json` document of the run and its Markdown summary."""
    report = engine_report(gen_options())
    app = gen_app(fake_dir, gen_options())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
    written = json.loads((fake_dir / "ggflip-fake-prompts.json").read_text())
    expected = json.loads(report.to_json())
    for document in (written, expected):  # timings differ from run to run
        for model in [document["baseline"], *document["quants"]]:
            model.pop("seconds")
    assert written == expected
    assert "| Q2_K |" in (fake_dir / "ggflip-fake-prompts.md").read_text()


@run_async
async def test_setup_starts_a_generation_task_in_the_generation_view(fake_dir: Path) -> None:
    """A generation task chosen in the setup view opens the generation run view."""
    options = RunOptions(models_path=Path("models.toml"), task="prompts", data=PROMPTS)
    app = fake_app(options, fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = gen_screen(app)
        assert screen.live is not None and screen.live.state == "finished"
        assert screen.live.spec.items[0].id == "p0"


@run_async
async def test_missing_prompts_show_the_error_screen(fake_dir: Path) -> None:
    app = gen_app(fake_dir, gen_options(data="nowhere.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "nowhere.jsonl" in str(app.screen.query_one("#error-message", Static).visual)


def test_tui_routes_generation_tasks_to_the_generation_view() -> None:
    """`ggflip tui --task gsm8k --chat ...` becomes GenOptions; a choice task does not."""
    args = argparse.Namespace(chat=True, system="Be brief.", max_new_tokens=32)
    gen = tui_gen_options(args, RunOptions(task="gsm8k", limit=2, batch_size=3))
    assert gen == GenOptions(
        task="gsm8k", limit=2, batch_size=3, chat=True, system="Be brief.", max_new_tokens=32
    )
    assert tui_gen_options(args, RunOptions(task="mmlu")) is None
    named = RunOptions(task="gsm8k", limit=2, first=True, baseline="a.gguf", quants=("b.gguf",))
    routed = tui_gen_options(args, named)
    assert routed is not None
    assert (routed.first, routed.baseline, routed.quants) == (True, "a.gguf", ("b.gguf",))


def test_turn_list_cells_show_no_answer_as_empty_set() -> None:
    """A rule that found no number ("[invalid]") shows as ∅, so `[invalid]` is never written into
    a cell (and can't be read as markup); a long GSM8K id is kept whole by its column."""
    from types import SimpleNamespace

    from ggflip.generate.compare import TurnRow
    from ggflip.tui.gen_cells import TURN_COLUMNS, TURN_WIDTHS, turn_cells

    row = TurnRow(
        index=0, id="gsm8k-test-1318", turn=0, gold="12",
        answers={"strict": ("12", "[invalid]")}, base_text="… #### 12", quant_text="…",
        base_truncated=False, quant_truncated=True, n_tokens=40, quant_n_tokens=128,
        n_prompt_tokens=60,
        first_divergence=1, kl_mean=0.5, kl_max=2.0, top1_agreement=0.8,
        delta_p_sum=0.0, delta_p_sq_sum=0.0, token_kl=(),
    )  # fmt: skip
    cells = dict(zip(TURN_COLUMNS, turn_cells(SimpleNamespace(rule="strict"), row)))  # type: ignore[arg-type]
    assert cells["base→quant"] == "12→∅" and cells["flip"] == "c→i"
    assert len(cells["id"]) <= dict(zip(TURN_COLUMNS, TURN_WIDTHS))["id"]
    from ggflip.tui.gen_detail import GenDetailScreen

    head = GenDetailScreen(row, "prompt", "strict", "F16", "Q2_K")._head().plain
    assert (
        "strict: 12 → ∅" in head and "[invalid]" not in head
    )  # the detail says what the list does


@run_async
async def test_esc_goes_back_to_the_generation_setup(fake_dir: Path) -> None:
    """Esc from the generation view shows the setup with the generation task and its prompts."""
    app = gen_app(fake_dir, gen_options(limit=5))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SetupScreen)
        assert app.screen.query_one("#task", Select).value == "prompts"
        assert app.screen.query_one("#data", Input).value == PROMPTS
        assert app.screen.query_one("#limit", Input).value == "5"


@run_async
async def test_offers_to_resume_an_unfinished_generation_run(fake_dir: Path) -> None:
    """A generation run cancelled before its last quant asks first; 'y' resumes and generates
    only with the missing quant (the baseline from its cache, Q8_0 from the run store)."""
    options = gen_options(no_cache=False, cache_dir=fake_dir / "cache")
    gated = GatedFactory("Q2_K")
    app = gen_app(fake_dir, options, gated)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await asyncio.to_thread(gated.waiting.wait, 30)
        await pilot.press("c")
        gated.release.set()
        await settle(pilot)
    factory = FakeBackendFactory(FAKE_MODELS)
    app = gen_app(fake_dir, options, factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ResumeScreen)
        assert app.screen.stored == {"F16": 12, "Q8_0": 12, "Q2_K": 0}
        await pilot.press("y")
        await settle(pilot)
        screen = gen_screen(app)
        assert screen.live is not None and screen.live.state == "finished"
        assert factory.opened == ["Q2_K"]
    assert json.loads(screen.live.current_report().to_json())["complete"] is True
