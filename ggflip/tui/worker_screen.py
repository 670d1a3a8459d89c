"""What the run screens share: one engine run in a thread worker, a log panel, cancel/re-run/back.

A subclass composes a status line (`#status`), progress rows (`#progress`, `.progress-row` with
`.progress-label`, a `ProgressBar` and `.progress-state`) and a `RichLog` with id `log`, styled
here once, implements `start()` (launch its worker and keep
it in `self._worker`) and `_refresh()` (redraw from its live state; set `self._dirty` when a
message changed that state without redrawing).
"""

from __future__ import annotations

import logging

from textual.screen import Screen
from textual.widgets import RichLog
from textual.worker import Worker

from ggflip.errors import GgflipError

REFRESH_SECONDS = 0.25
log = logging.getLogger("ggflip.tui")


def failure_message(error: BaseException | None, what: str) -> str:
    """The one line a failed run shows: a GgflipError as written, anything else as an internal
    error (logged with its traceback under `what`)."""
    if isinstance(error, GgflipError):
        return str(error)
    log.error("%s failed", what, exc_info=error)
    return f"internal error: {type(error).__name__}: {error}"


class WorkerScreen(Screen[None]):
    """A screen that drives one engine run in a thread worker."""

    DEFAULT_CSS = """
    WorkerScreen #status { height: 1; padding: 0 1; background: $boost; }
    WorkerScreen #progress { height: auto; padding: 0 1; }
    WorkerScreen .progress-row { height: 1; }
    WorkerScreen .progress-label { width: 22; }
    WorkerScreen .progress-state { width: 16; padding-left: 1; }
    WorkerScreen ProgressBar Bar { width: 40; }
    WorkerScreen #log { height: 10; border-top: solid $accent; display: none; }
    WorkerScreen.show-log #log { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._dirty = False
        self._worker: Worker[str] | None = None

    def start(self) -> None:
        """Start (or restart) the run."""
        raise NotImplementedError

    def _refresh(self) -> None:
        raise NotImplementedError

    def on_mount(self) -> None:
        log_panel = self.query_one("#log", RichLog)
        for line in self.app.log_lines:  # type: ignore[attr-defined]
            log_panel.write(line)
        self.set_interval(REFRESH_SECONDS, self._refresh_if_dirty)
        self.start()

    def add_log_line(self, line: str) -> None:
        """Append one log line to the log panel."""
        self.query_one("#log", RichLog).write(line)

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._refresh()

    def action_cancel(self) -> None:
        if self._worker is None or self._worker.is_finished:
            self.notify("No run is going.", severity="warning")
            return
        self._worker.cancel()

    def action_rerun(self) -> None:
        if self._worker is not None and not self._worker.is_finished:
            self._worker.cancel()
        self.start()

    def action_back(self) -> None:
        if self._worker is not None and not self._worker.is_finished:
            self._worker.cancel()
        self.dismiss()

    def action_toggle_log(self) -> None:
        self.toggle_class("show-log")
