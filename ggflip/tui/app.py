"""The ggflip Textual application: the setup view first, then the run view of the chosen mode
(multiple choice, generation or corpus).

The app holds what every screen shares: the backend factory (llama.cpp, or a fake injected by
tests), the clock the run view measures rates with, the export folder, and the log panel's
lines. Python logging, llama.cpp's native log included (logger "ggflip.llama"), is routed to
the log panel while the app runs, so nothing is ever written over the screen.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message

from ggflip.backends.base import BackendFactory
from ggflip.choice.setup import RunOptions
from ggflip.config.models_toml import ModelSet
from ggflip.corpus.setup import KldOptions
from ggflip.generate.setup import GenOptions
from ggflip.tui.corpus_view import KldScreen
from ggflip.tui.frontier_view import FrontierScreen
from ggflip.tui.gen_view import GenScreen
from ggflip.tui.help import CHOICE, HelpScreen
from ggflip.tui.pack_run import PackRun
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.setup import SetupScreen


class _PanelHandler(logging.Handler):
    """Post each log record to the app as a `GgflipApp.LogLine`; safe from any thread."""

    def __init__(self, app: GgflipApp) -> None:
        super().__init__(logging.INFO)
        self.app = app
        self.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.app.post_message(GgflipApp.LogLine(self.format(record)))
        except Exception:  # noqa: BLE001, S110 - a log line must never break the run or print over the screen
            pass


class GgflipApp(App[None]):
    """Compare a baseline GGUF with its quants, live: the face of ggflip."""

    TITLE = "ggflip"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("t", "frontier", "Frontier", show=False),
    ]

    class LogLine(Message):
        """One formatted log record for the log panel."""

        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    def __init__(
        self,
        options: RunOptions | None = None,
        *,
        factory: BackendFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        export_dir: Path | None = None,
        kld: KldOptions | None = None,
        gen: GenOptions | None = None,
        pack: PackRun | None = None,
    ) -> None:
        super().__init__()
        self.options = options or RunOptions()
        self._factory = factory
        self.clock = clock
        self.export_dir = export_dir or Path.cwd()
        self.kld = kld
        self.gen = gen
        self.pack = pack  # `tui --baseline-pack`: the multiple-choice run against the pack
        self.log_lines: deque[str] = deque(maxlen=2000)
        self._handler = _PanelHandler(self)
        self._root_level = logging.NOTSET

    def action_help(self) -> None:
        """`?`: what the numbers mean and the keys."""
        if isinstance(self.screen, HelpScreen):
            return
        modes = [getattr(screen, "HELP_MODE", None) for screen in self.screen_stack]
        self.push_screen(HelpScreen(next((m for m in reversed(modes) if m), CHOICE)))

    def action_frontier(self) -> None:
        """`t`: the memory–damage frontier of the run in view."""
        live = getattr(self.screen, "live", None)
        if live is None:
            self.notify("No run to draw the frontier of yet.", severity="warning")
            return
        self.push_screen(FrontierScreen(live.current_report().to_dict()["frontier"]))

    def backend_factory(self, model_set: ModelSet) -> BackendFactory:
        """The injected factory, else the one `model_set` names (`ggflip.backends.registry`)."""
        if self._factory is not None:
            return self._factory
        from ggflip.backends.registry import backend_factory

        return backend_factory(model_set)

    def get_default_screen(self) -> SetupScreen:
        return SetupScreen(self.options)

    def on_mount(self) -> None:
        root = logging.getLogger()
        self._root_level = root.level
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        root.addHandler(self._handler)
        # `ggflip tui --text FILE` or `--task gsm8k`: straight to that run, Esc goes to the setup
        if self.kld is not None:
            self.push_screen(KldScreen(self.kld))
        elif self.gen is not None:
            self.push_screen(GenScreen(self.gen))

    def on_unmount(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._handler)
        root.setLevel(self._root_level)

    def on_ggflip_app_log_line(self, message: LogLine) -> None:
        self.log_lines.append(message.line)
        for screen in self.screen_stack:
            if isinstance(screen, RunScreen):
                screen.add_log_line(message.line)
