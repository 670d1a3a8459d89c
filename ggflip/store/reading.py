"""Reading a file the user named: every way it can fail becomes one error naming the file.

The caller picks the error class (a model file is a `ModelFileError`, a text a `DataError`, a task
file a `ConfigError`) and the words for what the file should be; the messages are the same shape
everywhere: `<path>: <what> not found`, `<path>: is a folder, not a <what>`, `<path>: cannot read
<what>: <reason>`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ggflip.errors import GgflipError


def read_named_file(
    path: Path, what: str, error: type[GgflipError], n_bytes: int | None = None
) -> bytes:
    """The bytes of `path` (its first `n_bytes` if given).

    Raises:
        error: the file is missing, a folder, unreadable, or the path itself is unusable.
    """
    try:
        with path.open("rb") as handle:
            return handle.read() if n_bytes is None else handle.read(n_bytes)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except ValueError as exc:  # e.g. an embedded NUL character
        raise error(f"{path!r}: not a usable file path ({exc})") from None


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read a MiB at a time (files too big to hold: baselines, models).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
