"""The CLI's logging: ggflip's warnings on stderr as `ggflip: LEVEL: message`, llama.cpp's log
only with --verbose, everything in --log-file; the TUI logs to its panel and the file only.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever `sys.stderr` is when a record comes: while rich draws
    progress bars on a terminal that is its proxy, so a warning (a busy machine, say) prints
    above the bars instead of inside one."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr


def setup_logging(verbose: bool, log_file: Path | None, to_stderr: bool = True) -> None:
    """Install ggflip's handlers on the root logger (replacing ones an earlier call installed)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_ggflip", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if (verbose or log_file) else logging.WARNING)
    stderr = _CurrentStderr()
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(logging.Formatter("ggflip: %(levelname)s: %(message)s"))
    llama_quiet = logging.Filter()
    if not verbose:
        llama_quiet.filter = lambda record: not record.name.startswith("ggflip.llama")  # type: ignore[method-assign]
        stderr.addFilter(llama_quiet)
    # The TUI draws on the terminal: its log goes to its log panel (and the file), never to stderr.
    handlers: list[logging.Handler] = [stderr] if to_stderr else []
    if log_file:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
        )
        handlers.append(file_handler)
    for handler in handlers:
        handler._ggflip = True  # type: ignore[attr-defined]
        root.addHandler(handler)
