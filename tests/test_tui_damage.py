"""The TUI's noise-floor row and its "where it hurts" view (w), on the fake backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.widgets import DataTable

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.report import by_subject
from ggflip.choice.setup import resolve_run_spec
from ggflip.tui.damage import DamageScreen
from tests.tui_helpers import FAKE_MODELS, fake_app, run_async, start_run, write_fake_set


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@run_async
async def test_floor_row_and_damage_view(fake_dir: Path) -> None:
    """With the floor on, its row follows the baseline's; w lists the selected quant's subjects."""
    options = dataclasses.replace(write_fake_set(fake_dir), floor=True)
    events = list(run_comparison(resolve_run_spec(options), FakeBackendFactory(FAKE_MODELS)))
    assert isinstance(events[-1], RunFinished)
    expected = {q.label: q.by_subject for q in events[-1].report.quants}
    app = fake_app(options, fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        table = screen.query_one("#summary", DataTable)
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert labels[:2] == ["F16 (base)", "F16 (floor)"]
        report = screen.live.current_report()  # type: ignore[union-attr]
        assert report.floor is not None and report.floor.flips == 0
        assert all(q.verdict is not None for q in report.quants)
        await pilot.press("w")
        await pilot.pause()
        view = app.screen
        assert isinstance(view, DamageScreen)
        assert by_subject(view.rows) == expected[view.label]
        await pilot.press("escape")
        assert app.screen is screen
