"""What a new user trips over in the TUI (issue 28), driven headless on the fake backend: the
setup's default Limit, Esc's target, the verdict column, Enter on every row, the subject filter
per quant, the live m/w views and the floor's partial row, tables at 80 columns."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, Select, Static

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import FLOOR, QuestionScored, RunFinished, floor_label
from ggflip.choice.report import Report
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.scoring.floor import DIFFERENT, INDISTINGUISHABLE
from ggflip.tui import choice_cells, gen_cells
from ggflip.tui.choice_live import LiveRun
from ggflip.tui.choice_view import ChoiceScreen
from ggflip.tui.columns import fit_columns
from ggflip.tui.corpus_view import CORPUS_TASK
from ggflip.tui.damage import DamageScreen
from ggflip.tui.gen_detail import GenDetailScreen
from ggflip.tui.help import HelpScreen
from ggflip.tui.setup import DEMO_LIMIT, SetupScreen
from ggflip.tui.views import LIVE_SECONDS, MarginScreen
from tests.tui_helpers import (
    FAKE_MODELS,
    fake_app,
    named_rows,
    run_async,
    settle,
    start_run,
    write_fake_set,
)


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GGFLIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _with_floor(folder: Path) -> RunOptions:
    return dataclasses.replace(write_fake_set(folder), floor=True)


def _engine_report(options: RunOptions) -> Report:
    events = list(run_comparison(resolve_run_spec(options), FakeBackendFactory(FAKE_MODELS)))
    assert isinstance(events[-1], RunFinished)
    return events[-1].report


def _choice_screen(app: Any) -> ChoiceScreen:
    screens = [s for s in app.screen_stack if isinstance(s, ChoiceScreen)]
    assert len(screens) == 1
    return screens[0]


# --- the setup view ----------------------------------------------------------------------------


@run_async
async def test_setup_limit_defaults_to_the_demo_sample(fake_dir: Path) -> None:
    """No --limit: the form holds the demo's 300, so one Enter never scores all of MMLU; an empty
    Limit says what it means for the chosen task."""
    options = dataclasses.replace(write_fake_set(fake_dir), limit=None)
    async with fake_app(options, fake_dir).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        limit = pilot.app.screen.query_one("#limit", Input)
        assert DEMO_LIMIT == 300 and limit.value == "300"
        assert limit.placeholder == "all questions"
        pilot.app.screen.query_one("#task", Select).value = CORPUS_TASK
        await pilot.pause()
        assert limit.placeholder == "all chunks"
        pilot.app.screen.query_one("#task", Select).value = "gsm8k"
        await pilot.pause()
        assert limit.placeholder == "all prompts"
    given = dataclasses.replace(options, limit=12)
    async with fake_app(given, fake_dir).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert pilot.app.screen.query_one("#limit", Input).value == "12"


@run_async
async def test_setup_at_80x24_keeps_every_field_and_the_sizes_in_view(fake_dir: Path) -> None:
    """The Start button sits below the form, never over a field; size and bits/weight come
    before the (long) file name, inside the 80 columns."""
    async with fake_app(write_fake_set(fake_dir), fake_dir).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        start = screen.query_one("#start").region
        for field in ("#task", "#data", "#limit", "#seed", "#subjects"):
            assert not start.overlaps(screen.query_one(field).region), field
        labels = [str(c.label) for c in screen.query_one("#models", DataTable).ordered_columns]
        assert labels.index("size") < labels.index("file")
        assert labels.index("bits/weight") < labels.index("file")


@run_async
async def test_esc_from_a_corpus_run_with_all_chunks_keeps_corpus_mode(fake_dir: Path) -> None:
    """Esc from `ggflip tui --text` (no chunk limit): the corpus setup, Limit empty meaning
    every chunk (not the multiple-choice 'all questions')."""
    from ggflip.corpus.setup import KldOptions

    (fake_dir / "corpus.txt").write_text(" ".join(f"w{i % 41} t{i % 13}" for i in range(150)))
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = KldOptions(texts=(Path("corpus.txt"),), ctx=64, chunks=None, no_cache=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        assert screen.query_one("#task", Select).value == CORPUS_TASK
        limit = screen.query_one("#limit", Input)
        assert limit.value == "" and limit.placeholder == "all chunks"


# --- the multiple-choice run view --------------------------------------------------------------


@run_async
async def test_verdict_column_shows_each_quants_verdict(fake_dir: Path) -> None:
    """With the floor scored (the TUI's default), each quant's row carries the report's verdict;
    the floor's and the baseline's rows carry none."""
    expected = _engine_report(_with_floor(fake_dir))
    words = {DIFFERENT: "different", INDISTINGUISHABLE: "≈ floor"}
    async with fake_app(_with_floor(fake_dir), fake_dir).run_test(size=(80, 24)) as pilot:
        screen = await start_run(pilot)
        rows = named_rows(screen.query_one("#summary", DataTable))
    assert {q.verdict for q in expected.quants} <= set(words)
    for quant in expected.quants:
        assert rows[quant.label]["verdict"] == words[quant.verdict or ""]
    assert rows["F16 (base)"]["verdict"] == rows[floor_label("F16")]["verdict"] == ""


@run_async
async def test_enter_on_the_floor_row_lists_the_floors_flips(fake_dir: Path) -> None:
    """Enter on the floor's row shows its flips (what batching alone flips); on the baseline's
    row it says why there is no list of its own and goes to the one shown."""
    report = _engine_report(_with_floor(fake_dir))
    assert report.floor is not None
    async with fake_app(_with_floor(fake_dir), fake_dir).run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        summary = screen.query_one("#summary", DataTable)
        summary.focus()
        summary.move_cursor(row=summary.get_row_index(floor_label("F16")))
        await pilot.press("enter")
        await pilot.pause()
        assert screen.selected == floor_label("F16")
        flips = screen.query_one("#flips", DataTable)
        assert pilot.app.focused is flips
        shown = [str(flips.get_row_at(i)[0]) for i in range(flips.row_count)]
        assert shown == [r.id for r in report.floor.rows if r.flip]
        summary.focus()
        summary.move_cursor(row=0)
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        notes = [str(n.message) for n in pilot.app._notifications]
        assert any("F16 is what the other rows are compared with" in n for n in notes)
        assert pilot.app.focused is flips and screen.selected == floor_label("F16")


@run_async
async def test_the_subject_filter_belongs_to_one_quant(fake_dir: Path) -> None:
    """A subject picked for one quant's flips does not silently filter the next quant's."""
    async with fake_app(write_fake_set(fake_dir), fake_dir).run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert screen.selected == "Q2_K"
        screen.subject = "history"
        screen._refresh(force=True)
        title = screen.query_one("#flip-title", Static)
        assert "history (f)" in str(title.content)
        summary = screen.query_one("#summary", DataTable)
        summary.focus()
        await pilot.press("up")  # to Q8_0
        await pilot.pause()
        assert screen.selected == "Q8_0" and screen.subject is None
        assert "all subjects (f)" in str(title.content)


@run_async
async def test_margin_and_damage_views_follow_the_run(fake_dir: Path) -> None:
    """m and w are not snapshots: rows scored after they opened show up in them."""
    rows: list[Any] = []
    report = _engine_report(write_fake_set(fake_dir))
    quant_rows = list(report.quants[-1].rows)

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("")

    async with Host().run_test(size=(120, 40)) as pilot:
        damage = DamageScreen("Q2_K", lambda: rows)
        await pilot.app.push_screen(damage)
        assert "no question scored yet" in str(damage.query_one("#damage", Static).content)
        rows.extend(quant_rows)
        await pilot.pause(LIVE_SECONDS * 2.5)
        assert "no question scored yet" not in str(damage.query_one("#damage", Static).content)
        damage.dismiss()
        await pilot.pause()
        charts: list[Any] = []
        margins = MarginScreen(lambda: list(charts))
        await pilot.app.push_screen(margins)
        assert margins.charts == []
        charts.append(("Q2_K", report.quants[-1].margin_buckets))
        await pilot.pause(LIVE_SECONDS * 2.5)
        assert margins.charts == charts


def test_a_partial_floor_says_how_many_it_has_scored(fake_dir: Path) -> None:
    """Mid-floor, the floor's row is over the questions it scored so far: the line under the
    table says so, and the status line names it once ("F16 (floor)", not "(floor) (floor)")."""
    spec = resolve_run_spec(_with_floor(fake_dir))
    live = LiveRun(spec, lambda: 0.0)
    floor = floor_label("F16")
    for event in run_comparison(spec, FakeBackendFactory(FAKE_MODELS)):
        live.fold(event)
        if isinstance(event, QuestionScored) and event.role == FLOOR and event.done == 16:
            break
    assert live.models[floor].role == FLOOR and len(live.models[floor].rows) == 16
    base_correct = sum(r.base_choice == r.gold for r in live.models[floor].rows)
    note = choice_cells.paired_note(live)
    assert f"{floor} row: of 16 questions so far; F16 on those 16: " in note
    assert f"{100 * base_correct / 16:.1f}%" in note and "(F16 row: all 40)" in note
    screen = ChoiceScreen(_with_floor(fake_dir))
    screen.live = live
    assert screen.status_text() == f"Scoring {floor}: 16/40"


def test_tables_keep_their_key_columns_at_80(fake_dir: Path) -> None:
    """At 80 columns each run table keeps what judges a quant (and its progress), dropping the
    rest; every kept column fits."""
    choice = [c for c, _ in choice_cells.summary_columns(80)]
    assert choice[:6] == ["model", "acc", "Δacc", "flips", "KL mean", "verdict"]
    assert "done" in choice
    gen = [c for c, _ in gen_cells.gen_table_columns(80)]
    assert gen == ["model", "acc", "Δacc", "c→i/i→c", "same text", "KL mean", "done"]
    turns = [c for c, _ in gen_cells.turn_table_columns(80)]
    assert turns[:6] == ["id", "turn", "gold", "base→quant", "flip", "1st div"]
    for pairs in (
        choice_cells.summary_columns(80),
        gen_cells.gen_table_columns(80),
        gen_cells.turn_table_columns(80),
    ):
        assert sum(w + 2 for _, w in pairs) <= 79
    assert fit_columns(30, ["a", "b", "c"], [10, 10, 10], ["c", "a"]) == [("a", 10), ("c", 10)]


@run_async
async def test_generation_enter_reaches_the_turn_list_without_tab(fake_dir: Path) -> None:
    """The table's cursor starts on the quant shown: Enter goes to its turns, Enter again opens
    a turn (no Tab needed)."""
    import shutil

    from ggflip.generate.setup import GenOptions

    data = Path(__file__).parent / "data" / "gen-tui-prompts.jsonl"
    shutil.copy(data, fake_dir / "prompts.jsonl")
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.gen = GenOptions(task="prompts", data="prompts.jsonl", no_cache=True, max_new_tokens=8)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        summary = app.screen.query_one("#summary", DataTable)
        summary.focus()
        await pilot.pause()
        assert summary.cursor_row == summary.get_row_index(app.screen.selected)
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#turns", DataTable)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, GenDetailScreen)


@run_async
async def test_help_follows_the_view(fake_dir: Path) -> None:
    """? in the corpus view explains the corpus table, not multiple choice's."""
    from ggflip.corpus.setup import KldOptions

    (fake_dir / "corpus.txt").write_text(" ".join(f"w{i % 41} t{i % 13}" for i in range(150)))
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = KldOptions(texts=(Path("corpus.txt"),), ctx=64, chunks=2, no_cache=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and app.screen.mode == "corpus"
        console = Console(width=110, record=True, file=io.StringIO())
        console.print(app.screen._content())
        text = console.export_text()
        assert "PPL ratio" in text and "McNemar" not in text


def test_generation_status_explains_a_first_batch_at_zero(fake_dir: Path) -> None:
    """Before its first batch of turns ends a quant reads 0 done: the status line says why,
    instead of a bare `turn 0/12` and no ETA."""
    import shutil

    from ggflip.generate.setup import GenOptions, resolve_gen_spec
    from ggflip.tui.gen_live import LiveGen
    from ggflip.tui.gen_view import GenScreen

    shutil.copy(Path(__file__).parent / "data" / "gen-tui-prompts.jsonl", fake_dir / "p.jsonl")
    write_fake_set(fake_dir)
    options = GenOptions(task="prompts", data="p.jsonl", no_cache=True, batch_size=12)
    live = LiveGen(resolve_gen_spec(options), lambda: 0.0)
    live.state, live.current = "running", "Q8_0"
    live.models["Q8_0"].status = "generating"
    screen = GenScreen(options)
    screen.live = live
    assert screen.status_text() == (
        "Generating Q8_0: turn 0/12 (12 generate together; counted when they end)"
    )
    live.models["Q8_0"].done = 12
    assert screen.status_text() == "Generating Q8_0: turn 12/12"
