"""The rich consoles of the CLI: 200 columns when written to a file or pipe.

Piped, rich folds everything to 80 columns, breaking tables and paths mid-word; a file or a pipe
has no width, so give it room (an explicit `COLUMNS` still wins). On a terminal, its own width.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    """A Console on stdout (or stderr) that is 200 columns wide unless it is a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if wide else None)
