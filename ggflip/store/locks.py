"""Advisory file locks in the cache directory, so ggflip processes sharing it take turns.

A lock is `fcntl.flock` on `<cache>/locks/<name>.lock`; the holder writes its pid into the
file so a waiting process can say whom it waits for. The kernel releases the lock when the
holder exits, even on `kill -9`, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from ggflip.errors import CacheError, DiskFullError, ReadOnlyCacheError

log = logging.getLogger("ggflip.lock")
READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class CacheLock:
    """An exclusive lock on one name in a cache directory; use as a context manager."""

    def __init__(self, root: Path, name: str, purpose: str) -> None:
        self.path = root / "locks" / f"{name}.lock"
        self.purpose = purpose
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, waiting (and saying so on the log) while another process holds it.

        Raises:
            ReadOnlyCacheError: the cache directory cannot be written.
            CacheError, DiskFullError: the lock file cannot be created.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(
                    f"{self.path.parent}: disk full while creating a lock file; free space and "
                    "re-run"
                ) from None
            if exc.errno in READ_ONLY_ERRNOS:
                raise ReadOnlyCacheError(
                    f"{self.path.parent.parent}: the cache directory is read-only "
                    f"({exc.strerror}); pass --no-cache or a writable --cache-dir"
                ) from None
            raise CacheError(f"{self.path}: cannot create lock file: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            log.warning(
                "waiting for another ggflip process (pid %s) %s; it holds %s",
                holder,
                self.purpose,
                self.path,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
            log.warning("the other ggflip process is done; going on")
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError:
            pass  # the pid is only there to name the holder in a waiting message
        self._handle = handle

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> CacheLock:  # noqa: PYI034 - no typing.Self before Python 3.11
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
