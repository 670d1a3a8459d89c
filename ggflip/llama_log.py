"""Route llama.cpp's native log (llama and ggml) into Python logging.

llama.cpp writes its log to stderr, which the TUI draws on, and the `verbose=False`
switch of llama-cpp-python redirects process-wide file descriptors and is not
thread-safe. `install_llama_log_handler()` replaces the native log callback with one
that assembles llama.cpp's fragments into whole lines and emits each as a record of
the logger "ggflip.llama", with ggml's level mapped to a `logging` level. Nothing is
printed unless the application configures that logger (or the root logger).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

LOGGER_NAME = "ggflip.llama"
logger = logging.getLogger(LOGGER_NAME)

# enum ggml_log_level in ggml/include/ggml.h; CONT continues the previous message.
GGML_LOG_LEVEL_NONE = 0
GGML_LOG_LEVEL_DEBUG = 1
GGML_LOG_LEVEL_INFO = 2
GGML_LOG_LEVEL_WARN = 3
GGML_LOG_LEVEL_ERROR = 4
GGML_LOG_LEVEL_CONT = 5

GGML_TO_LOGGING_LEVEL: dict[int, int] = {
    GGML_LOG_LEVEL_NONE: logging.INFO,
    GGML_LOG_LEVEL_DEBUG: logging.DEBUG,
    GGML_LOG_LEVEL_INFO: logging.INFO,
    GGML_LOG_LEVEL_WARN: logging.WARNING,
    GGML_LOG_LEVEL_ERROR: logging.ERROR,
}


class _LineAssembler:
    """Join llama.cpp's log fragments into lines and emit each line once it is complete."""

    def __init__(self, target: logging.Logger) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._pending = ""
        self._level = logging.INFO
        self.recent: deque[tuple[int, int, str]] = deque(maxlen=40)  # (line number, level, text)
        self.n_lines = 0

    def feed(self, ggml_level: int, text: str) -> None:
        """Add one fragment; CONT fragments keep the level of the message they continue."""
        with self._lock:
            if ggml_level != GGML_LOG_LEVEL_CONT:
                new_level = GGML_TO_LOGGING_LEVEL.get(ggml_level, logging.INFO)
                if self._pending and new_level != self._level:
                    self._emit(self._pending)
                    self._pending = ""
                self._level = new_level
            *lines, self._pending = (self._pending + text).split("\n")
            for line in lines:
                self._emit(line)

    def flush(self) -> None:
        """Emit a trailing fragment that never got its newline."""
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""

    def _emit(self, line: str) -> None:
        if line.strip():
            self.n_lines += 1
            self.recent.append((self.n_lines, self._level, line.strip()))
            self._target.log(self._level, "%s", line.rstrip())


_assembler = _LineAssembler(logger)
# The ctypes callback must stay referenced for as long as llama.cpp may call it.
_callback: Any = None


def _on_native_log(level: int, text: bytes | None, _user_data: Any) -> None:
    """Receive one native log fragment; never let an exception cross back into C."""
    with contextlib.suppress(Exception):  # ctypes would only print it, mid-computation
        if text:
            _assembler.feed(int(level), text.decode("utf-8", errors="replace"))


def install_llama_log_handler() -> None:
    """Send llama.cpp's native log to the "ggflip.llama" logger; safe to call more than once."""
    global _callback
    import llama_cpp

    if _callback is None:
        _callback = llama_cpp.llama_log_callback(_on_native_log)
    # Set it every time: importing llama_cpp installs its own callback, and so may other code.
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def flush_llama_log() -> None:
    """Emit any partial native log line still waiting for its newline."""
    _assembler.flush()


def mark_llama_log() -> int:
    """A position in the recent native log, for `llama_errors_since`."""
    flush_llama_log()
    return _assembler.n_lines


def llama_errors_since(mark: int, limit: int = 3) -> list[str]:
    """The last `limit` warning/error lines llama.cpp logged after `mark` (from `mark_llama_log`).

    Used to put llama.cpp's own reason into the error when it refuses a model.
    """
    flush_llama_log()
    errors = [
        text
        for number, level, text in list(_assembler.recent)
        if number > mark and level >= logging.WARNING
    ]
    return errors[-limit:]


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def capture_llama_lines(level: int = logging.INFO) -> Iterator[list[str]]:
    """Collect every line llama.cpp logs at `level` or above inside the block, in order (the list
    yielded fills as they come; the last partial line is flushed on exit)."""
    install_llama_log_handler()
    lines: list[str] = []
    handler, old_level = _Collect(lines), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)  # the records must be created to be seen
    try:
        yield lines
    finally:
        flush_llama_log()
        logger.removeHandler(handler)
        logger.setLevel(old_level)
