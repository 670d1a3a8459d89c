"""The TUI driven headless with Pilot on the fake backend: live table, flip list, views, cancel,
export, errors."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.answers import FLIP_LOST
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.report import Report
from ggflip.choice.setup import resolve_run_spec
from ggflip.runs.resume import is_unfinished
from ggflip.scoring import formats
from ggflip.tasks.questions import LETTERS
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.views import (
    ErrorScreen,
    MarginScreen,
    QuestionDetailScreen,
    ResumeScreen,
    SubjectPicker,
)
from tests.tui_helpers import (
    FAKE_MODELS,
    GatedFactory,
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
    return tmp_path


def _engine_report(fake_dir: Path) -> Report:
    """The same run through the engine directly, for the expected values."""
    events = list(
        run_comparison(resolve_run_spec(write_fake_set(fake_dir)), FakeBackendFactory(FAKE_MODELS))
    )
    assert isinstance(events[-1], RunFinished)
    return events[-1].report


def _rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


@run_async
async def test_run_fills_summary_table(fake_dir: Path) -> None:
    """Every model gets a row whose metrics are the engine's."""
    expected = _engine_report(fake_dir)
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        rows = named_rows(screen.query_one("#summary", DataTable))
        assert set(rows) == {"F16 (base)", "Q8_0", "Q2_K"}
        assert expected.baseline is not None
        assert rows["F16 (base)"]["acc"] == f"{100 * expected.baseline.accuracy:.1f}%"
        for quant in expected.quants:
            row = rows[quant.label]
            assert row["acc"] == f"{100 * quant.accuracy:.1f}%"
            assert row["flips"] == f"{100 * quant.flips:.1f}%"
            assert row["c→i/i→c"] == f"{quant.n_flips_lost}/{quant.n_flips_gained}"
            assert row["KL mean"] == formats.sig(quant.kl_mean)
            assert row["done"] == "40/40"
        assert "verdict" not in row  # no floor in this run: nothing to judge against
        assert screen.live is not None and screen.live.state == "finished"


@run_async
async def test_flip_list_shows_every_flip_of_the_selected_quant(fake_dir: Path) -> None:
    """The flip list holds exactly the flipped questions of the quant under the summary cursor."""
    expected = {q.label: q for q in _engine_report(fake_dir).quants}
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert screen.selected == "Q2_K"  # the list followed the quant being scored
        flips = [r for r in expected["Q2_K"].rows if r.flip]
        assert flips, "the noisy fake quant must flip some answers"
        shown = _rows(screen.query_one("#flips", DataTable))
        assert [row[0] for row in shown] == [r.id for r in flips]
        first = flips[0]
        assert shown[0][2:5] == [
            LETTERS[first.gold],
            f"{LETTERS[first.base_choice]}→{LETTERS[first.quant_choice]}",
            "c→i" if first.flip == FLIP_LOST else "i→c",
        ]
        summary = screen.query_one("#summary", DataTable)
        summary.focus()
        await pilot.press("up")  # to Q8_0
        await pilot.pause()
        assert screen.selected == "Q8_0"
        shown = _rows(screen.query_one("#flips", DataTable))
        assert [row[0] for row in shown] == [r.id for r in expected["Q8_0"].rows if r.flip]


@run_async
async def test_flip_list_filters_and_sorts(fake_dir: Path) -> None:
    """d cycles the direction filter, s the order (KL, then margin)."""
    expected = next(q for q in _engine_report(fake_dir).quants if q.label == "Q2_K")
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        table = screen.query_one("#flips", DataTable)
        await pilot.press("d")
        assert [row[0] for row in _rows(table)] == [
            r.id for r in expected.rows if r.flip == FLIP_LOST
        ]
        await pilot.press("d", "d", "s")
        by_kl = sorted((r for r in expected.rows if r.flip), key=lambda r: -r.kl)
        assert [row[0] for row in _rows(table)] == [r.id for r in by_kl]
        await pilot.press("s")
        margins = [float(row[6]) for row in _rows(table)]
        assert margins == sorted(margins)
        await pilot.press("f")  # the subject picker: "all subjects", then subjects by flip count
        picker = app.screen
        assert isinstance(picker, SubjectPicker)
        history = next(i for i, (subject, _) in enumerate(picker.subjects) if subject == "history")
        await pilot.press(*["down"] * (history + 1), "enter")
        await pilot.pause()
        assert app.screen is screen and screen.subject == "history"
        shown = _rows(table)
        assert shown and {row[1] for row in shown} == {"history"}
        assert len(shown) == sum(1 for r in expected.rows if r.flip and r.subject == "history")


@run_async
async def test_enter_on_a_flip_opens_its_detail(fake_dir: Path) -> None:
    """The detail view shows the question, its options and both models' probabilities."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        table = screen.query_one("#flips", DataTable)
        table.focus()
        first_id = str(table.get_row_at(0)[0])
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, QuestionDetailScreen)
        assert detail.question.id == first_id == detail.row.id
        assert detail.row.flip is not None
        assert len(detail.row.base_probs) == len(detail.question.choices) == 4
        await pilot.press("escape")
        assert app.screen is screen


@run_async
async def test_top_margin_view_charts_each_quant(fake_dir: Path) -> None:
    """m opens one chart per quant with the engine's margin buckets."""
    expected = {q.label: q.margin_buckets for q in _engine_report(fake_dir).quants}
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        await pilot.press("m")
        margins = app.screen
        assert isinstance(margins, MarginScreen)
        assert dict(margins.charts) == expected


@run_async
async def test_cancel_stops_between_models_and_keeps_finished_work(fake_dir: Path) -> None:
    """c stops the run (the gated model is never scored); export then holds the finished quant
    only."""
    factory = GatedFactory("Q2_K")
    app = fake_app(write_fake_set(fake_dir), fake_dir, factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        assert factory.waiting.wait(timeout=30)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await pilot.press("c")
        factory.release.set()
        await settle(pilot)
        assert screen.live is not None and screen.live.state == "cancelled"
        assert screen.live.models["Q2_K"].done == 0
        await pilot.press("e")
        document = json.loads((fake_dir / "ggflip-fake-mmlu.json").read_text())
        assert document["complete"] is False
        assert [q["label"] for q in document["quants"]] == ["Q8_0"]
        assert "incomplete" in (fake_dir / "ggflip-fake-mmlu.md").read_text()


@run_async
async def test_export_writes_the_json_report_and_markdown(fake_dir: Path) -> None:
    """e writes the `--json` document and a Markdown summary of the same run."""
    expected = _engine_report(fake_dir).to_dict()
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        await pilot.press("e")
    document = json.loads((fake_dir / "ggflip-fake-mmlu.json").read_text())
    assert document["schema"] == "ggflip.report/1" and document["complete"] is True
    for got, want in zip(document["quants"], expected["quants"], strict=True):
        assert got["rows"] == want["rows"]
        assert (got["flips"], got["kl_mean"], got["margin_buckets"]) == (
            want["flips"],
            want["kl_mean"],
            want["margin_buckets"],
        )
    markdown = (fake_dir / "ggflip-fake-mmlu.md").read_text()
    assert markdown.startswith("# ggflip: set fake, task mmlu") and "## Q2_K" in markdown


@run_async
async def test_a_failing_model_shows_its_error_and_the_app_stays_usable(fake_dir: Path) -> None:
    """A missing model file ends the run with a modal holding the one-line message."""
    app = fake_app(write_fake_set(fake_dir, extra_quant="/m/missing.gguf"), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
        error = app.screen
        assert isinstance(error, ErrorScreen)
        assert error.message == "/m/missing.gguf: model file not found"
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)
        await pilot.press("escape")  # back to the setup view, ready for another run
        assert type(app.screen).__name__ == "SetupScreen"


@run_async
async def test_bad_limit_is_refused_in_the_setup_view(fake_dir: Path) -> None:
    """A non-positive limit is refused before any run starts."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pilot.app.screen.query_one("#limit").value = "0"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "SetupScreen"
        assert any("--limit must be positive" in n.message for n in app._notifications)


@run_async
async def test_log_records_go_to_the_log_panel(fake_dir: Path) -> None:
    """llama.cpp's log (logger ggflip.llama) lands in the panel, not on the terminal."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        await pilot.press("l")  # show the panel
        logging.getLogger("ggflip.llama").info("llama_model_loader: loaded meta data")
        await pilot.pause()
        await pilot.pause()
        assert any("llama_model_loader: loaded meta data" in line for line in app.log_lines)
        panel = screen.query_one("#log", RichLog)
        assert any("loaded meta data" in line.text for line in panel.lines)


def test_event_messages_of_one_run_replace_each_other() -> None:
    """Progress messages collapse within a run (its queue holds every event), never across
    runs."""
    first = RunScreen.EventsArrived(1)
    assert first.can_replace(RunScreen.EventsArrived(1))
    assert not first.can_replace(RunScreen.EventsArrived(2))


@pytest.mark.real_model
@run_async
async def test_real_gemma_against_itself_in_the_tui(tmp_path: Path) -> None:
    """On the real F16 compared with itself through llama.cpp: KL 0, no flips, llama.cpp's log in
    the panel only."""
    from ggflip.choice.setup import RunOptions
    from ggflip.tui.app import GgflipApp

    models = Path(__file__).resolve().parent.parent / "models.toml"
    options = RunOptions(models_path=models, set_name="gemma-270m-self", limit=4, no_cache=True)
    app = GgflipApp(options, export_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert screen.live is not None and screen.live.state == "finished", app.log_lines
        rows = named_rows(screen.query_one("#summary", DataTable))
        # KL shows significant digits: the self KL is float64 round-off, far below 1e-12.
        self_row = rows["F16 (self)"]
        assert self_row["flips"] == "0.0%" and 0.0 <= float(self_row["KL mean"]) < 1e-12
        assert screen.query_one("#flips", DataTable).row_count == 0
        assert any(" ggflip.llama " in line for line in app.log_lines)


@run_async
async def test_a_finished_comparison_is_read_back_without_asking(fake_dir: Path) -> None:
    """Starting a comparison whose every model is stored does not offer to resume: it shows the
    stored run, scoring nothing again."""
    options = dataclasses.replace(
        write_fake_set(fake_dir), no_cache=False, cache_dir=fake_dir / "cache"
    )
    async with fake_app(options, fake_dir).run_test(size=(120, 40)) as pilot:
        await start_run(pilot)
    factory = FakeBackendFactory(FAKE_MODELS)
    async with fake_app(options, fake_dir, factory=factory).run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert not any(isinstance(s, ResumeScreen) for s in pilot.app.screen_stack)
        assert screen.live is not None and screen.live.state == "finished"
        assert factory.opened == []  # everything came from the run store and the baseline cache
        await pilot.press("r")  # a re-run of the finished comparison does not ask either
        await settle(pilot)
        assert pilot.app.screen is screen and screen.live is not None
        assert screen.live.state == "finished"


@run_async
async def test_offers_to_resume_an_unfinished_run(fake_dir: Path) -> None:
    """A comparison cancelled before its last quant asks first; 'y' resumes and scores only the
    missing quant."""
    options = dataclasses.replace(
        write_fake_set(fake_dir), no_cache=False, cache_dir=fake_dir / "cache"
    )
    gated = GatedFactory("Q2_K")
    async with fake_app(options, fake_dir, factory=gated).run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        assert gated.waiting.wait(timeout=30)
        await pilot.press("c")
        gated.release.set()
        await settle(pilot)
    factory = FakeBackendFactory(FAKE_MODELS)
    async with fake_app(options, fake_dir, factory=factory).run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ResumeScreen)
        assert pilot.app.screen.stored == {"F16": 40, "Q8_0": 40, "Q2_K": 0}
        await pilot.press("y")
        await settle(pilot)
        screen = next(s for s in pilot.app.screen_stack if isinstance(s, RunScreen))
        assert screen.live is not None and screen.live.state == "finished"
        assert factory.opened == ["Q2_K"]


def test_only_a_started_and_unfinished_run_counts_as_unfinished() -> None:
    assert not is_unfinished({"F16": 0, "Q8_0": 0}, 40, "F16")  # nothing stored
    assert not is_unfinished({"F16": 40, "Q8_0": 0}, 40, "F16")  # only the baseline cache
    assert not is_unfinished({"F16": 40, "Q8_0": 40}, 40, "F16")  # complete
    assert is_unfinished({"F16": 40, "Q8_0": 12}, 40, "F16")
    assert is_unfinished({"F16": 40, "Q8_0": 40, "Q2_K": 0}, 40, "F16")
    assert is_unfinished({"F16": 7, "Q8_0": 0}, 40, "F16")
