"""The TUI's `t` view: the memory–damage frontier of the run in view."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from ggflip.backends.base import ModelProbe
from ggflip.backends.fake import FakeBackendFactory
from ggflip.config.models_toml import ModelSpec
from ggflip.gguf.memory import KvLayout, estimate
from ggflip.tui.frontier_view import FrontierScreen, frontier_content
from tests.tui_helpers import FAKE_MODELS, fake_app, run_async, settle, start_run, write_fake_set

SIZES = {"/m/f16.gguf": 1_000_000, "/m/q8.gguf": 200_000, "/m/q2.gguf": 300_000}
# One layer whose K and V cells are 32 wide: (32 + 32) x 2 bytes of f16 KV a cell.
LAYOUT = KvLayout("llama", (32,), (32,), (False,), 32, 32)
KV_AT_2048 = 2048 * (32 + 32) * 2


class SizedFactory(FakeBackendFactory):
    """The fakes with weights and a KV cache: Q2_K is larger and noisier than Q8_0, so Q8_0
    beats it."""

    def probe(self, spec: ModelSpec) -> ModelProbe:
        weights = SIZES[str(spec.path)]
        memory = estimate(weights, LAYOUT, 2048).to_json()
        return dataclasses.replace(
            super().probe(spec), file_size=weights, memory=memory, memory_unknown=None
        )


@run_async
async def test_t_shows_the_frontier_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = fake_app(write_fake_set(tmp_path), tmp_path, SizedFactory(FAKE_MODELS))
    async with app.run_test(size=(140, 40)) as pilot:
        await start_run(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, FrontierScreen)
        assert app.screen.query_one("#frontier", Static) is not None
        console = Console(width=140, record=True, file=io.StringIO())
        console.print(frontier_content(app.screen.frontier))
        text = console.export_text()
        assert "Memory against KL mean" in text and "beaten by Q8_0" in text
        points = {p["label"]: p for p in app.screen.frontier["points"]}
        assert points["Q2_K"]["dominated_by"] == "Q8_0" and points["Q8_0"]["on_frontier"]
        assert points["Q8_0"]["memory_bytes"] == 200_000 + KV_AT_2048
        await pilot.press("t")
        await settle(pilot)
        assert not isinstance(app.screen, FrontierScreen)


def test_without_a_placed_model_it_says_why() -> None:
    console = Console(width=120, record=True, file=io.StringIO())
    frontier = {"points": [], "left_out": [{"label": "Q8_0", "reason": "memory unknown: x"}]}
    console.print(frontier_content(frontier))
    assert console.export_text().splitlines() == [
        "No model with a known memory and damage yet.", "Q8_0: memory unknown: x"
    ]
