"""The one way ggflip writes a file: to a temporary name beside it, then a rename.

A reader sees the old file or the new one, never a partial write; a full disk is a
`DiskFullError` naming the folder, and whatever was there before stays untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from ggflip.errors import CacheError, DiskFullError, ModelFileError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename; never leaves a partial file.

    Raises:
        DiskFullError: the disk filled up; the previous content of `path` is untouched.
        CacheError: any other write failure.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(
                f"{path.parent}: disk full while writing {path.name}; free space and re-run "
                "(finished work is kept)"
            ) from None
        raise CacheError(f"{path}: cannot write cache file: {exc.strerror}") from None


@contextlib.contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a `.tmp` path beside `dst` (folder made), renamed onto `dst` if the body succeeds.

    Raises:
        DiskFullError: the disk filled up (ENOSPC) while writing.
        ModelFileError: any other OS error while writing, naming `dst`.
    """
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        yield tmp
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left on the device while writing {dst}") from exc
        raise ModelFileError(f"could not write {dst}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
