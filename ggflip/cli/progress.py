"""The CLI's one run loop: every mode's events go into its fold (`ggflip.runs.fold`), which the
progress bars on stderr and the report (also on Ctrl-C) are read from.

This module folds nothing itself: it draws a fold's per-model progress and prints its notes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ggflip.choice.events import FLOOR
from ggflip.errors import ExitCode
from ggflip.runs.fold import CACHED, LOADING, WAITING, Fold, ModelProgress

ReportT = TypeVar("ReportT")


def progress_bars(console: Console) -> Progress:
    """The per-model progress bars every mode draws on stderr."""
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _name(model: ModelProgress[Any, Any]) -> str:
    """A model's name on a progress line: its label and role (the floor's label names its role)."""
    return model.label if model.role == FLOOR else f"{model.label} ({model.role})"


class _Bars:
    """One bar per model that started, kept in step with a fold."""

    def __init__(self, progress: Progress, stderr: Console) -> None:
        self.progress, self.stderr = progress, stderr
        self.bars: dict[str, TaskID] = {}
        self.printed: dict[str, int] = {}

    def draw(self, model: ModelProgress[Any, Any]) -> None:
        """Create or update `model`'s bar (none for a cached baseline or a model not started)."""
        if model.status == CACHED or (model.status == WAITING and model.done == 0):
            return
        loading = model.status == LOADING
        description = f"{_name(model)} loading" if loading else _name(model)
        total = model.total if model.total and (model.done or not loading) else None
        if model.label not in self.bars:
            self.bars[model.label] = self.progress.add_task(description, total=total)
        self.progress.update(
            self.bars[model.label], description=description, completed=model.done, total=total
        )
        self._log_line(model)

    def _log_line(self, model: ModelProgress[Any, Any]) -> None:
        """Logs and CI: a line per tenth, since a redrawn bar only shows at the end there."""
        done, total = model.done, model.total
        if self.stderr.is_terminal or not total or self.printed.get(model.label) == done:
            return
        if done and (done % max(1, total // 10) == 0 or done == total):
            self.printed[model.label] = done
            print(f"ggflip: {_name(model)} {done}/{total}", file=sys.stderr, flush=True)


def follow_run(
    events: Iterator[object],
    fold: Fold[Any, Any, Any, ReportT],
    stderr: Console,
    emit: Callable[[ReportT], None],
) -> int:
    """Fold every event, drawing progress and notes on stderr; emit the report (a partial one on
    Ctrl-C, with one line saying so); returns the exit code."""
    shown = 0
    try:
        with progress_bars(stderr) as progress:
            bars = _Bars(progress, stderr)
            for event in events:
                fold.fold(event)
                for note in fold.notes[shown:]:
                    stderr.print(note.text, style="yellow" if note.warning else "dim", markup=False)
                shown = len(fold.notes)
                label = getattr(event, "label", None)
                if label in fold.models:
                    bars.draw(fold.models[label])
    except KeyboardInterrupt:
        close = getattr(events, "close", None)
        if close is not None:
            close()
        emit(fold.current_report())
        stderr.print(
            f"ggflip: error: interrupted; the report holds the {fold.n_finished_quants} quant(s) "
            f"that finished{fold.resume_hint}",
            markup=False,
        )
        return int(ExitCode.INTERRUPTED)
    emit(fold.current_report())
    return int(ExitCode.OK)
