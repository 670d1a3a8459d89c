"""The rich consoles of the CLI: 200 columns when written to a file or pipe.

Piped, rich folds everything to 80 columns, breaking tables and paths mid-word; a file or a pipe
has no width, so give it room (an explicit `COLUMNS` still wins). On a terminal, its own width.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from rich.console import Console

PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    """A Console on stdout (or stderr) that is 200 columns wide unless it is a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if wide else None)


# What a shell reports for a tool its pipe stopped (128 + SIGPIPE): `ggflip ... | head`.
CLOSED_PIPE = 141


def discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def stopping_on_closed_pipe(command: Callable[[], int]) -> int:
    """`command`'s exit code, its output flushed; `CLOSED_PIPE`, quietly, when the reader of
    stdout went away (`| head`) while it wrote or at the flush."""
    try:
        code = command()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        discard_stdout()
        return CLOSED_PIPE
