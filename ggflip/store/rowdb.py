"""The row store: a run's scored rows kept for resume, one SQLite file shared by every mode.

Messages call it the run store (a run's store); the file name and lock name are on disk and stay.

One SQLite database (`<cache>/runs.sqlite`, WAL mode) holds one row per (run, model, index):
a mode names its run and model keys and stores an opaque payload per question with a kind
(`base`, `row`, `skip`) and a sha256 of its content. Each batch of questions is one
transaction, so `kill -9` loses at most the batch being scored and never leaves a half-written
row.

Nothing is trusted blindly: the database carries its format in `PRAGMA user_version` and is
integrity-checked when opened; a file that is not a database, of another format or damaged is
reported in one line, moved aside (`runs.sqlite.damaged`) and rebuilt. A row whose checksum
does not match is reported, dropped and scored again.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import CacheError, DiskFullError, ReadOnlyCacheError
from ggflip.store.locks import CacheLock

STORE_FORMAT = 4  # bumped when a stored payload changes meaning; older stores are set aside
STORE_NAME = "runs.sqlite"
BASE, ROW, SKIP = "base", "row", "skip"
log = logging.getLogger("ggflip.store.rowdb")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    run TEXT NOT NULL, model TEXT NOT NULL, idx INTEGER NOT NULL,
    label TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL, checksum TEXT NOT NULL,
    PRIMARY KEY (run, model, idx)
)
"""

Item = tuple[str, bytes]
"""A stored question: its kind (`base`, `row`, `skip`) and payload."""


def _checksum(run: str, model: str, index: int, kind: str, payload: bytes) -> str:
    digest = hashlib.sha256(f"{run}\0{model}\0{index}\0{kind}\0".encode())
    digest.update(payload)
    return digest.hexdigest()[:32]


def _sqlite_error(path: Path, exc: sqlite3.Error) -> Exception:
    """A user-facing error for a failed write: disk full, or anything else."""
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return DiskFullError(
            f"{path}: disk full while saving scored questions; free space and re-run (finished "
            "work is kept)"
        )
    return CacheError(f"{path}: cannot write the run store: {exc}")


@dataclass(frozen=True)
class RowStore:
    """Where a run store lives; `open()` gives a connection (one per thread and use).

    Attributes:
        path: the SQLite file.
        max_pages: cap on the database's size in pages (SQLite then reports "disk full"); for tests.
    """

    path: Path
    max_pages: int | None = None

    @classmethod
    def in_cache(cls, cache_dir: Path) -> RowStore:
        """The run store of a cache directory."""
        return cls(cache_dir / STORE_NAME)

    def open(self) -> StoreSession:
        """Open (creating, checking, or rebuilding) the database under the cache directory's lock.

        Raises:
            CacheError, DiskFullError: the database cannot be created.
        """
        with CacheLock(self.path.parent, "runstore", "opening the run store"):
            try:
                return StoreSession(self, self._connect())
            except sqlite3.DatabaseError as exc:
                log.warning(
                    "run store %s is damaged (%s); moving it aside and starting a new one",
                    self.path,
                    exc,
                )
                self._move_aside()
            try:
                return StoreSession(self, self._connect())
            except sqlite3.Error as exc:
                raise _sqlite_error(self.path, exc) from None

    def open_read_only(self) -> StoreSession:
        """Open the database for reading only, without a lock or any write (for a cache directory
        that cannot be written); `immutable` because WAL readers would otherwise write `-shm`.

        Raises:
            ReadOnlyCacheError: there is no database to read.
            CacheError: it cannot be read.
        """
        if not self.path.exists():
            raise ReadOnlyCacheError(
                f"{self.path.parent}: the cache directory is read-only and holds no run store; "
                "pass --no-cache or a writable --cache-dir"
            )
        try:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro&immutable=1",
                uri=True,
                check_same_thread=False,
            )
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise CacheError(f"{self.path}: cannot read the run store: {exc}") from None
        return StoreSession(self, connection)

    def open_for_reading(self) -> StoreSession:
        """`open()`, or `open_read_only()` when the cache directory cannot be written."""
        try:
            return self.open()
        except ReadOnlyCacheError:
            return self.open_read_only()

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"{self.path.parent}: cannot create the cache directory: {exc.strerror}"
            ) from None
        connection = sqlite3.connect(
            self.path, timeout=60, check_same_thread=False, isolation_level=None
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if version != STORE_FORMAT and tables:
                raise sqlite3.DatabaseError(f"format {version}, expected {STORE_FORMAT}")
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA user_version={STORE_FORMAT}")
            if self.max_pages is not None:
                connection.execute(f"PRAGMA max_page_count={int(self.max_pages)}")
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def _move_aside(self) -> None:
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        try:
            self.path.replace(self.path.with_name(self.path.name + ".damaged"))
        except OSError:
            self.path.unlink(missing_ok=True)


class StoreSession:
    """One open connection to the run store."""

    def __init__(self, store: RowStore, connection: sqlite3.Connection) -> None:
        self.store = store
        self._db = connection

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StoreSession:  # noqa: PYI034 - no typing.Self before Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def restore(self, run: str, model: str, label: str) -> dict[int, Item]:
        """The stored questions of one model in one run; damaged rows are reported and dropped."""
        good: dict[int, Item] = {}
        damaged: list[int] = []
        try:
            cursor = self._db.execute(
                "SELECT idx, kind, payload, checksum FROM rows WHERE run = ? AND model = ?",
                (run, model),
            )
            for index, kind, payload, checksum in cursor:
                if isinstance(payload, bytes) and checksum == _checksum(
                    run, model, index, kind, payload
                ):
                    good[index] = (kind, payload)
                else:
                    damaged.append(index)
        except sqlite3.DatabaseError as exc:
            log.warning(
                "run store %s cannot be read (%s); scoring %s from the start",
                self.store.path,
                exc,
                label,
            )
            return {}
        if damaged:
            log.warning(
                "run store: %d damaged row(s) of %s dropped; scoring them again",
                len(damaged),
                label,
            )
            self.forget(run, model, damaged)
        return good

    def record(self, run: str, model: str, label: str, items: Mapping[int, Item]) -> None:
        """Store one batch of scored questions in one transaction.

        Raises:
            DiskFullError: the disk is full (earlier batches stay stored).
            CacheError: any other write failure.
        """
        if not items:
            return
        values = [
            (run, model, index, label, kind, payload, _checksum(run, model, index, kind, payload))
            for index, (kind, payload) in items.items()
        ]
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)", values
                )
        except sqlite3.Error as exc:
            raise _sqlite_error(self.store.path, exc) from None

    def forget(
        self, run: str, model: str | None = None, indexes: Iterable[int] | None = None
    ) -> None:
        """Drop stored rows: a whole run, one model of it, or some of its questions."""
        try:
            with self._transaction():
                if model is None:
                    self._db.execute("DELETE FROM rows WHERE run = ?", (run,))
                elif indexes is None:
                    self._db.execute("DELETE FROM rows WHERE run = ? AND model = ?", (run, model))
                else:
                    self._db.executemany(
                        "DELETE FROM rows WHERE run = ? AND model = ? AND idx = ?",
                        [(run, model, i) for i in indexes],
                    )
        except sqlite3.Error as exc:
            raise _sqlite_error(self.store.path, exc) from None

    def count(self, run: str, model: str) -> int:
        """How many questions of one model in one run are stored."""
        try:
            row = self._db.execute(
                "SELECT count(*) FROM rows WHERE run = ? AND model = ?", (run, model)
            ).fetchone()
        except sqlite3.DatabaseError:
            return 0
        return int(row[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self._db.execute("COMMIT")
        else:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
