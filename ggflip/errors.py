"""Errors a user can act on, and the process exit codes the front ends map them to.

Every failure caused by the user's input (files, settings, data) is raised as a
`GgflipError` subclass whose message names what to fix. The CLI prints it as one
`ggflip: error: ...` line and exits with the subclass's `exit_code`; the TUI shows
it in a notification. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the `ggflip` command, the one place they are defined."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    MODEL = 4
    DATA = 5
    VOCAB_MISMATCH = 6
    CACHE = 7
    DISK = 8
    BACKEND = 9
    THRESHOLD = 10  # a --fail-if condition was met: the report was written
    INTERRUPTED = 130


class GgflipError(Exception):
    """Base of all errors whose message is meant for the user; a subclass names its exit code in
    its header (`class UsageError(GgflipError, exit_code=ExitCode.USAGE)`) or inherits it."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init_subclass__(cls, exit_code: ExitCode | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code


class UsageError(GgflipError, exit_code=ExitCode.USAGE):
    """A command-line flag or combination of flags is wrong."""


class ConfigError(GgflipError, exit_code=ExitCode.CONFIG):
    """models.toml (or another settings file) is missing, unparsable or invalid."""


class ModelFileError(GgflipError, exit_code=ExitCode.MODEL):
    """A GGUF file is missing, not a GGUF, truncated, or fails to load."""


class DataError(GgflipError, exit_code=ExitCode.DATA):
    """A question file or dataset is missing or has malformed rows."""


class VocabMismatchError(GgflipError, exit_code=ExitCode.VOCAB_MISMATCH):
    """Baseline and quant do not share one vocabulary, so KL between them is meaningless."""


class CacheError(GgflipError, exit_code=ExitCode.CACHE):
    """A cache file is unreadable or cannot be written."""


class ReadOnlyCacheError(CacheError):
    """The cache directory cannot be written (permissions, a read-only file system); reading
    finished results from it still works."""


class DiskFullError(GgflipError, exit_code=ExitCode.DISK):
    """Writing results failed for lack of disk space; finished work already on disk is kept."""


class BackendError(GgflipError, exit_code=ExitCode.BACKEND):
    """llama.cpp refused an operation (context creation, decode) for a reason the user can fix."""


class PackError(GgflipError, exit_code=ExitCode.DATA):
    """A baseline pack is not a pack, damaged, of another mode, or does not fit the run."""


class RunInterrupted(GgflipError, exit_code=ExitCode.INTERRUPTED):
    """The run was stopped by the user (Ctrl-C or a cancel) between questions."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> str:
    """The hint an error message ends a misspelt name with: "; did you mean 'x'?" (up to `n`
    names, "or"-joined), or "" when nothing is close enough."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_counts(
    positive: Mapping[str, int | None], at_least_zero: Mapping[str, int | None] | None = None
) -> None:
    """Refuse a flag's count out of its range (None: not given), in the order given.

    Raises:
        UsageError: naming the flag, the rule and the value.
    """
    for flag, value in positive.items():
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    for flag, value in (at_least_zero or {}).items():
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be 0 or more, got {value}")
