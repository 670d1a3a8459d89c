"""The run store: every scored question persisted as it is scored, so a stopped run resumes.

One SQLite database (`<cache>/runs.sqlite`, WAL mode) holds one row per (run, model, question):
the run key is the baseline cache key (baseline file, vocabulary, prompt, questions, K, n_ctx),
the model key digests a model's label, file identity and llama settings. A row holds a
baseline's compact record (`base`), a quant's comparison row (`row`) or why the question was
skipped (`skip`), with a sha256 of its content. Each batch of questions is one transaction, so
`kill -9` loses at most the batch being scored and never leaves a half-written row.

Nothing is trusted blindly: the database carries its format in `PRAGMA user_version` and is
integrity-checked when opened; a file that is not a database, of another format or damaged is
reported in one line, moved aside (`runs.sqlite.damaged`) and rebuilt. A row whose checksum or
content does not match is reported, dropped and scored again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ggflip.choice.answers import BaselineScores, QuestionRow
from ggflip.errors import CacheError, DiskFullError, ReadOnlyCacheError
from ggflip.store.locks import CacheLock

STORE_FORMAT = 1
STORE_NAME = "runs.sqlite"
BASE, ROW, SKIP = "base", "row", "skip"
log = logging.getLogger("ggflip.choice.runstore")

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
class RunStore:
    """Where a run store lives; `open()` gives a connection (one per thread and use).

    Attributes:
        path: the SQLite file.
        max_pages: cap on the database's size in pages (SQLite then reports "disk full"); for tests.
    """

    path: Path
    max_pages: int | None = None

    @classmethod
    def in_cache(cls, cache_dir: Path) -> RunStore:
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

    def __init__(self, store: RunStore, connection: sqlite3.Connection) -> None:
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


def encode_row(row: QuestionRow) -> bytes:
    """A quant's comparison row as JSON (floats round-trip exactly)."""
    return json.dumps(asdict(row), allow_nan=True).encode()


def decode_row(payload: bytes) -> QuestionRow:
    """Inverse of `encode_row`; ValueError/TypeError/KeyError when the payload does not fit."""
    fields = json.loads(payload)
    for name in (
        "base_probs",
        "quant_probs",
        "base_sums",
        "base_norms",
        "quant_sums",
        "quant_norms",
    ):
        if name in fields:
            fields[name] = tuple(float(p) for p in fields[name])
    return QuestionRow(**fields)


_BASE_HEADER = struct.Struct("<III")  # n_options, k, n_rows


@dataclass(frozen=True)
class BaseRecord:
    """One question's baseline record as stored: option scores and its scored positions' top-K."""

    option_logprobs: np.ndarray
    option_sums: np.ndarray
    option_norms: np.ndarray
    top_token: np.ndarray
    top_ids: np.ndarray
    top_logprobs: np.ndarray
    tail_logmass: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.top_token)

    def write_into(self, scores: BaselineScores, index: int) -> None:
        """Put this record back at question `index`; ValueError when its shape does not fit
        there."""
        n_options = len(self.option_logprobs)
        if (
            n_options > scores.option_logprobs.shape[1]
            or self.top_ids.shape[1] != scores.top_ids.shape[1]
        ):
            raise ValueError("record of another shape")
        if self.n_rows != scores.n_rows(index):
            raise ValueError(
                f"record of {self.n_rows} scored positions, the prompts have {scores.n_rows(index)}"
            )
        start, stop = int(scores.row_offsets[index]), int(scores.row_offsets[index + 1])
        scores.option_logprobs[index, :n_options] = self.option_logprobs
        scores.option_sums[index, :n_options] = self.option_sums
        scores.option_norms[index, :n_options] = self.option_norms
        scores.top_token[start:stop] = self.top_token
        scores.top_ids[start:stop] = self.top_ids
        scores.top_logprobs[start:stop] = self.top_logprobs
        scores.tail_logmass[start:stop] = self.tail_logmass


def encode_baseline(scores: BaselineScores, index: int, n_options: int) -> bytes:
    """The baseline's compact record of one question (all its scored positions), as raw
    little-endian arrays."""
    k = scores.top_ids.shape[1]
    start, stop = int(scores.row_offsets[index]), int(scores.row_offsets[index + 1])
    header = _BASE_HEADER.pack(n_options, k, stop - start)
    return b"".join(
        (
            header,
            scores.option_logprobs[index, :n_options].astype("<f8").tobytes(),
            scores.option_sums[index, :n_options].astype("<f8").tobytes(),
            scores.option_norms[index, :n_options].astype("<f8").tobytes(),
            scores.top_token[start:stop].astype("<i4").tobytes(),
            scores.tail_logmass[start:stop].astype("<f8").tobytes(),
            scores.top_ids[start:stop].astype("<i4").tobytes(),
            scores.top_logprobs[start:stop].astype("<f4").tobytes(),
        )
    )


def decode_baseline(payload: bytes, k: int) -> BaseRecord:
    """Inverse of `encode_baseline`; ValueError when the record is not of top-K `k` or of the wrong
    length."""
    n_options, record_k, n_rows = _BASE_HEADER.unpack_from(payload)
    if record_k != k:
        raise ValueError("record of another shape")
    if len(payload) != _BASE_HEADER.size + n_options * 24 + n_rows * (12 + k * 8):
        raise ValueError("record of another length")
    offset = _BASE_HEADER.size
    arrays = []
    for dtype, count in (
        ("<f8", n_options),
        ("<f8", n_options),
        ("<f8", n_options),
        ("<i4", n_rows),
        ("<f8", n_rows),
        ("<i4", n_rows * k),
        ("<f4", n_rows * k),
    ):
        arrays.append(np.frombuffer(payload, dtype, count, offset))
        offset += count * np.dtype(dtype).itemsize
    options, sums, norms, top, tail, ids, logprobs = arrays
    return BaseRecord(
        options, sums, norms, top, ids.reshape(n_rows, k), logprobs.reshape(n_rows, k), tail
    )


class ModelProgress:
    """One model's stored questions in one run, restored once and recorded batch by batch.

    Without a store session every call is a no-op, so the engine scores the same way with or
    without resuming.
    """

    def __init__(self, session: StoreSession | None, run: str, model: str, label: str) -> None:
        self.session, self.run, self.model, self.label = session, run, model, label

    def _restored(self) -> dict[int, Item]:
        return self.session.restore(self.run, self.model, self.label) if self.session else {}

    def _drop(self, index: int, exc: Exception) -> None:
        log.warning(
            "run store: row %d of %s does not decode (%s); scoring it again", index, self.label, exc
        )
        if self.session:
            self.session.forget(self.run, self.model, [index])

    def restore_quant(self) -> dict[int, QuestionRow | str]:
        """Stored comparison rows (or skip reasons, as str) by question index."""
        restored: dict[int, QuestionRow | str] = {}
        for index, (kind, payload) in self._restored().items():
            try:
                restored[index] = payload.decode() if kind == SKIP else decode_row(payload)
                if kind not in (SKIP, ROW) or (kind == ROW and restored[index].index != index):  # type: ignore[union-attr]
                    raise ValueError(f"unexpected {kind} row")
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                restored.pop(index, None)
                self._drop(index, exc)
        return restored

    def restore_baseline(self, n_questions: int, k: int) -> dict[int, BaseRecord | str]:
        """Stored baseline records (or skip reasons, as str) by question index."""
        restored: dict[int, BaseRecord | str] = {}
        for index, (kind, payload) in self._restored().items():
            try:
                if not 0 <= index < n_questions:
                    raise ValueError("index out of range")
                if kind == SKIP:
                    restored[index] = payload.decode()
                elif kind == BASE:
                    restored[index] = decode_baseline(payload, k)
                else:
                    raise ValueError(f"unexpected {kind} row")
            except (ValueError, TypeError, UnicodeDecodeError, struct.error) as exc:
                self._drop(index, exc)
        return restored

    def record_quant(self, items: Mapping[int, QuestionRow | str]) -> None:
        """Store one batch of a quant's rows (str: the question was skipped, for this reason)."""
        if self.session:
            self.session.record(
                self.run,
                self.model,
                self.label,
                {
                    index: (SKIP, item.encode())
                    if isinstance(item, str)
                    else (ROW, encode_row(item))
                    for index, item in items.items()
                },
            )

    def record_baseline(
        self, scores: BaselineScores, items: Mapping[int, tuple[int, str | None]]
    ) -> None:
        """Store one batch of baseline records: index -> (number of options, skip reason or
        None)."""
        if self.session:
            self.session.record(
                self.run,
                self.model,
                self.label,
                {
                    index: (SKIP, reason.encode())
                    if reason is not None
                    else (BASE, encode_baseline(scores, index, n_options))
                    for index, (n_options, reason) in items.items()
                },
            )

    def drop(self, indexes: Iterable[int]) -> None:
        """Drop some stored questions of this model (records that no longer fit the prompts)."""
        if self.session:
            self.session.forget(self.run, self.model, list(indexes))

    def forget(self) -> None:
        """Drop this model's stored questions (the baseline, once it is in the baseline cache)."""
        if self.session:
            self.session.forget(self.run, self.model)
