"""The TUI as a newcomer meets it: a live table that adds up, Enter on the finished view, error
text shown as written, per-quant subject counts, empty margin buckets, exports that never
overwrite, the help screen."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from textual.app import App, ComposeResult
from textual.widgets import DataTable, OptionList, Static

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.setup import resolve_run_spec
from ggflip.tui.choice_cells import pct
from ggflip.tui.choice_tables import FlipTable
from ggflip.tui.help import HelpScreen
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.views import ErrorScreen, MarginScreen, QuestionDetailScreen, SubjectPicker
from tests.tui_helpers import (
    FAKE_MODELS,
    PausingFactory,
    fake_app,
    run_async,
    settle,
    start_run,
    write_fake_set,
)


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _row(table: DataTable, key: str) -> dict[str, str]:
    cells = table.get_row(key)
    return {str(column.label): str(cell) for column, cell in zip(table.ordered_columns, cells)}


@run_async
async def test_a_partial_row_is_over_the_questions_that_quant_scored(fake_dir: Path) -> None:
    """While Q8_0 is part-way, its accuracy and Δacc are over its scored questions, and the note
    gives the baseline's accuracy on those same questions, "of n"."""
    factory = PausingFactory("Q8_0", after_calls=3)
    app = fake_app(write_fake_set(fake_dir), fake_dir, factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        assert factory.waiting.wait(timeout=30)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        for _ in range(200):  # the throttled redraw runs within a refresh interval
            await pilot.pause(0.02)
            if screen.live is not None and screen.live.models["Q8_0"].rows and not screen._dirty:
                break
        assert screen.live is not None
        rows = screen.live.models["Q8_0"].rows
        n = len(rows)
        assert 0 < n < 40
        gold = np.array([r.gold for r in rows])
        quant_acc = float(np.mean([r.quant_choice for r in rows] == gold))
        base_acc = float(np.mean([r.base_choice for r in rows] == gold))
        summary = screen.query_one("#summary", DataTable)
        q8 = _row(summary, "Q8_0")
        assert q8["acc"] == pct(quant_acc)
        assert q8["Δacc"] == f"{100 * (quant_acc - base_acc):+.1f}"
        assert q8["done"] == f"{n}/40"
        assert screen.live.baseline is not None
        assert _row(summary, "F16")["acc"] == pct(screen.live.baseline.accuracy)
        note = str(screen.query_one("#paired", Static).render())
        assert f"Q8_0 row: of {n} questions so far; F16 on those {n}: {pct(base_acc)}" in note
        assert screen.query_one("#paired", Static).display
        factory.release.set()
        await settle(pilot)
        assert not screen.query_one("#paired", Static).display  # nothing partial any more


@run_async
async def test_enter_on_the_finished_view_goes_to_the_flips_then_the_detail(
    fake_dir: Path,
) -> None:
    """The finished view starts on the summary table: Enter moves to that quant's flip list,
    a second Enter opens the first flip's detail."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert app.focused is screen.query_one("#summary", DataTable)
        await pilot.press("enter")
        await pilot.pause()
        flips = screen.query_one("#flips", DataTable)
        assert app.focused is flips
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, QuestionDetailScreen)
        assert app.screen.row.id == str(flips.get_row_at(0)[0])


@run_async
async def test_error_text_keeps_its_brackets(fake_dir: Path) -> None:
    """A message holding `[...]` is shown as written, not read as markup (status and modal)."""
    app = fake_app(write_fake_set(fake_dir, extra_quant="/m/[q]missing.gguf"), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        assert isinstance(app.screen, ErrorScreen)
        message = str(app.screen.query_one("#error-message", Static).render())
        assert message == "/m/[q]missing.gguf: model file not found"
        await pilot.press("escape")
        status = str(app.screen.query_one("#status", Static).render())
        assert status == "Failed: /m/[q]missing.gguf: model file not found"


@run_async
async def test_a_bad_models_file_is_shown_with_its_table_name(fake_dir: Path) -> None:
    options = write_fake_set(fake_dir)
    (fake_dir / "models.toml").write_text('[llama]\nn_ctxx = 1\n[sets.a]\nbaseline = "a.gguf"\n')
    app = fake_app(options, fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        text = str(app.screen.query_one("#set-description", Static).render())
        assert "[llama] n_ctxx: unknown key; did you mean 'n_ctx'?" in text
        notes = list(app._notifications)
        assert notes and "[llama] n_ctxx" in notes[0].message and notes[0].markup is False


@run_async
async def test_subject_counts_are_the_selected_quants(fake_dir: Path) -> None:
    """f lists each subject with the flips of the quant the list shows, not of every quant."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert screen.live is not None and screen.selected == "Q2_K"
        expected = {"algebra": 0, "history": 0}
        for row in screen.live.models["Q2_K"].rows:
            if row.flip:
                expected[row.subject] += 1
        await pilot.press("f")
        picker = app.screen
        assert isinstance(picker, SubjectPicker)
        assert dict(picker.subjects) == expected
        assert "Q2_K" in str(picker.query_one(OptionList).border_title)


@run_async
async def test_empty_margin_buckets_show_a_dash(fake_dir: Path) -> None:
    app = fake_app(write_fake_set(fake_dir, n_questions=6), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, MarginScreen)
        buckets = dict(app.screen.charts)["Q2_K"]
        empty = [b for b in buckets if b["n"] == 0]
        assert empty  # 6 questions cannot fill 7 buckets
        panel = MarginScreen._chart("Q2_K", buckets, 1.0)
        table = panel.renderable
        rates = list(table.columns[2].cells)  # type: ignore[attr-defined]
        counts = list(table.columns[3].cells)  # type: ignore[attr-defined]
        for i, bucket in enumerate(buckets):
            if bucket["n"] == 0:
                assert rates[i].strip() == "–" and counts[i] == "–"
            else:
                assert counts[i] == f"{bucket['flips']}/{bucket['n']}"


@run_async
async def test_export_never_replaces_an_earlier_export(fake_dir: Path) -> None:
    """A second e writes `-2` files beside the first ones, which stay as they were."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        await pilot.press("e")
        first = (fake_dir / "ggflip-fake-mmlu.json").read_text()
        await pilot.press("e")
    assert (fake_dir / "ggflip-fake-mmlu.json").read_text() == first
    assert json.loads((fake_dir / "ggflip-fake-mmlu-2.json").read_text()) == json.loads(first)
    assert (fake_dir / "ggflip-fake-mmlu-2.md").exists()


@run_async
async def test_question_mark_opens_the_legend(fake_dir: Path) -> None:
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=110, record=True, file=io.StringIO())
        console.print(app.screen._content())
        text = console.export_text()
        for term in ("flips", "c→i", "changes", "McNemar p", "KL", "same top", "verdict", "w "):
            assert term in text
        assert "PPL ratio" not in text and "same text" not in text
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


class _TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield FlipTable()


@run_async
async def test_the_flip_list_is_never_drawn_with_stale_column_widths(fake_dir: Path) -> None:
    """A frame drawn between adding rows and the table's next idle (a loaded machine) must not
    leave the list truncated: `q23` stays `q23` after the table settles."""
    events = list(
        run_comparison(resolve_run_spec(write_fake_set(fake_dir)), FakeBackendFactory(FAKE_MODELS))
    )
    assert isinstance(events[-1], RunFinished)
    rows = [r for r in events[-1].report.quants[1].rows if r.flip]
    assert any(len(r.id) == 3 for r in rows)
    async with _TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(FlipTable)
        table.show(rows, ("Q2_K",), force=True)
        early = [table.render_line(y).text for y in range(1, len(rows) + 1)]  # before any idle
        await pilot.pause()
        await pilot.pause()
        late = [table.render_line(y).text for y in range(1, len(rows) + 1)]
    for line in (*early, *late):
        assert line.split()[0] in {r.id for r in rows}
    assert [line.split()[0] for line in late] == [r.id for r in rows]


@pytest.mark.parametrize(
    ("mode", "terms", "absent"),
    [
        (
            "generate",
            ("same text", "1st div", "top-1", "∅", "[invalid]", "acc k/n", "Tab"),
            ("McNemar",),
        ),
        ("corpus", ("PPL ratio", "±", "RMS Δp", "n / p", "] / ["), ("c→i", "McNemar")),
        ("choice", ("w", "verdict", "McNemar p", "(floor)"), ("PPL ratio", "1st div")),
    ],
)
def test_each_view_has_its_own_legend(
    mode: str, terms: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    """`?` in the corpus or generation view explains that view's columns, not multiple choice's."""
    console = Console(width=110, record=True, file=io.StringIO())
    console.print(HelpScreen(mode)._content())
    text = console.export_text()
    for term in terms:
        assert term in text, term
    for term in absent:
        assert term not in text, term
