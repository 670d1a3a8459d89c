"""Shared pieces of the TUI tests: a fake comparison set on disk and helpers that drive the app."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable

from ggflip.backends.fake import FakeBackend, FakeBackendFactory, FakeModel
from ggflip.choice.setup import RunOptions
from ggflip.config.models_toml import ModelSpec
from ggflip.tui.app import GgflipApp
from ggflip.tui.run_screen import RunScreen

FAKE_MODELS = {
    "/m/f16.gguf": FakeModel(),
    "/m/q8.gguf": FakeModel(noise=0.05),
    "/m/q2.gguf": FakeModel(noise=0.6),
}


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no pytest async plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


def write_fake_set(
    folder: Path, n_questions: int = 40, extra_quant: str | None = None
) -> RunOptions:
    """A models.toml (F16, Q8_0, Q2_K on fake paths) and a JSONL of questions; paths relative to
    `folder`."""
    quants = ['{ path = "/m/q8.gguf", label = "Q8_0" }', '{ path = "/m/q2.gguf", label = "Q2_K" }']
    if extra_quant:
        quants.append(f'{{ path = "{extra_quant}", label = "broken" }}')
    (folder / "models.toml").write_text(
        '[sets.fake]\ndescription = "fake models for tests"\n'
        'baseline = { path = "/m/f16.gguf", label = "F16" }\n'
        f"quants = [ {', '.join(quants)} ]\n"
    )
    with (folder / "questions.jsonl").open("w") as handle:
        for i in range(n_questions):
            row = {
                "id": f"q{i}",
                "question": f"question number {i} about things",
                "choices": ["w1", "w2", "w3", "w4"],
                "answer": i % 4,
                "subject": ("algebra", "history")[i % 2],
            }
            handle.write(json.dumps(row) + "\n")
    return RunOptions(models_path=Path("models.toml"), data="questions.jsonl", no_cache=True)


def fake_app(
    options: RunOptions, export_dir: Path, factory: FakeBackendFactory | None = None
) -> GgflipApp:
    """The app on the fake backend with a frozen clock (no rates or ETAs: snapshots stay stable)."""
    return GgflipApp(
        options,
        factory=factory or FakeBackendFactory(FAKE_MODELS),
        clock=lambda: 0.0,
        export_dir=export_dir,
    )


def _quiet(app: App[None]) -> bool:
    """Nothing left to change the screen: no worker running, no redraw pending, and every table's
    column widths fitted to its rows (DataTable fits them on its next idle, not on `add_row`)."""
    if any(not worker.is_finished for worker in app.workers):
        return False
    if any(getattr(screen, "_dirty", False) for screen in app.screen_stack):
        return False
    tables = [table for screen in app.screen_stack for table in screen.query(DataTable)]
    return not any(table._require_update_dimensions or table._new_rows for table in tables)


async def settle(pilot: Pilot[None]) -> None:
    """Wait for the final state, not for time: every worker ended (a cancelled one too), every
    message it posted handled, every table laid out; then one more pause for the last repaint.

    A snapshot taken on a slow or loaded machine sees the same screen as on a fast one. The
    deadline only turns a hang into a failure.
    """
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        await pilot.pause()
        if _quiet(pilot.app):
            await pilot.pause()
            if _quiet(pilot.app):
                return
        elif any(not worker.is_finished for worker in pilot.app.workers):
            await asyncio.sleep(0.02)  # a thread worker is still going: let it run
    raise AssertionError("the app never settled: a worker or a redraw kept going")


async def start_run(pilot: Pilot[None]) -> RunScreen:
    """Let the setup view read its files, press Enter, and wait for the run to finish."""
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)
    screens = [screen for screen in pilot.app.screen_stack if isinstance(screen, RunScreen)]
    assert len(screens) == 1
    return screens[0]


class GatedFactory(FakeBackendFactory):
    """A fake factory whose `open` of one model blocks until `release` is set (to cancel
    mid-run)."""

    def __init__(self, gated_label: str) -> None:
        super().__init__(FAKE_MODELS)
        self.gated_label = gated_label
        self.waiting = threading.Event()
        self.release = threading.Event()

    def open(self, spec: ModelSpec) -> FakeBackend:
        if spec.label == self.gated_label:
            self.waiting.set()
            self.release.wait(timeout=30)
        return super().open(spec)


class PausingFactory(FakeBackendFactory):
    """A fake factory whose model `label` stops in its `after_calls + 1`-th llama.cpp call until
    `release` is set, leaving that quant scored part-way."""

    def __init__(self, label: str, after_calls: int) -> None:
        super().__init__(FAKE_MODELS)
        self.label, self.after_calls = label, after_calls
        self.waiting = threading.Event()
        self.release = threading.Event()

    def open(self, spec: ModelSpec) -> FakeBackend:
        backend = super().open(spec)
        if spec.label != self.label:
            return backend
        logits = backend.logits

        def pausing_logits(requests: Any) -> Any:
            if backend.calls == self.after_calls:
                self.waiting.set()
                self.release.wait(timeout=30)
            return logits(requests)

        backend.logits = pausing_logits  # type: ignore[method-assign]
        return backend


def named_rows(table: DataTable) -> dict[str, dict[str, str]]:
    """A table's shown cells by the row's first cell and the column's label (which columns show
    depends on the terminal's width)."""
    labels = [str(column.label) for column in table.ordered_columns]
    rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
    return {row[0]: dict(zip(labels, row)) for row in rows}
