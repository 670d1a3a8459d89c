"""Overlap llama.cpp's decodes with the numpy scoring of the rows they return.

Every mode has the same loop: decode a batch, turn its logits rows into numbers (normalizers, the
baseline's record, KL), store them, decode the next. `overlapped` runs that loop as a pipeline:
the decode of batch i + 1 runs in the calling thread (every llama.cpp call of a model stays in one
thread) while batch i is scored by a pool of scoring threads; llama-cpp-python's ctypes calls and
numpy's large loops both release the GIL, so the two run at once. Results come back in batch
order and are the same numbers as the serial loop: a batch's scoring depends only on that batch.

Memory stays bounded: a batch's logits are its own arrays (the backend copies each row out of
llama.cpp's buffer before the next decode), and at most two batches' logits are alive, the one
being scored and the one being decoded. Memory a backend reuses is leased
(`ggflip.backends.leases`): the leases a decode takes are given back once its batch is scored
and the consumer asks for the next one, so no decode writes into rows still being read.

The pool's size is the backend factory's thread budget (`BackendFactory.scoring_workers`,
`ggflip.backends.threads`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ggflip.backends.leases import Leases, collect

Batch = TypeVar("Batch")
Logits = TypeVar("Logits")
Result = TypeVar("Result")
Item = TypeVar("Item")
Out = TypeVar("Out")

log = logging.getLogger("ggflip.pipeline")

RowMap = Callable[[Callable[[Item], Out], Iterable[Item]], list[Out]]
"""Maps a function over a batch's row blocks: in the scoring pool, or in the calling thread."""


def requested_workers(no_overlap: bool, threads: int | None) -> int | None:
    """The scoring threads `--no-overlap` / `--scoring-threads N` ask for (None: automatic)."""
    return 0 if no_overlap else threads


def serial_map(function: Callable[[Item], Out], items: Iterable[Item]) -> list[Out]:
    """`RowMap` in the calling thread."""
    return [function(item) for item in items]


def overlapped(
    batches: Iterable[Batch],
    decode: Callable[[Batch], Logits],
    score: Callable[[Batch, Logits, RowMap], Result],
    workers: int,
) -> Iterator[tuple[Batch, Result]]:
    """(batch, score(batch, decode(batch), row_map)) for each batch, in order.

    Args:
        batches: the work, in order.
        decode: the llama.cpp part, called in the calling thread, one batch at a time.
        score: the numpy part; it may split its rows with `row_map`, which runs them on the
            scoring threads. It must not touch the backend.
        workers: scoring threads; 0 decodes and scores in turn in the calling thread.

    A batch's logits (and any view of them in its result) stay valid until the consumer asks for
    the next batch: only then are the leases of its decode given back.

    Raises:
        Whatever `decode` or `score` raises (Ctrl-C included), at the batch it belongs to: every
        batch before it is yielded first, the batches after it are not scored.
    """
    if workers <= 0:
        yield from _serial(batches, decode, score)
    else:
        yield from _pipelined(batches, decode, score, workers)


def _serial(
    batches: Iterable[Batch],
    decode: Callable[[Batch], Logits],
    score: Callable[[Batch, Logits, RowMap], Result],
) -> Iterator[tuple[Batch, Result]]:
    """`overlapped` without scoring threads: decode and score in turn in the calling thread."""
    clock = _Clock()
    try:
        for batch in batches:
            with collect() as leases:
                logits = clock.time("decode", decode, batch)
            result = clock.time("score", score, batch, logits, serial_map)
            del logits
            yield batch, result
            leases.give_back()
    finally:
        clock.report(0)


def _pipelined(
    batches: Iterable[Batch],
    decode: Callable[[Batch], Logits],
    score: Callable[[Batch, Logits, RowMap], Result],
    workers: int,
) -> Iterator[tuple[Batch, Result]]:
    """`overlapped` on `workers` scoring threads: batch i is scored while batch i + 1 decodes."""
    clock = _Clock()
    rows_pool = ThreadPoolExecutor(workers, thread_name_prefix="ggflip-rows")
    batch_pool = ThreadPoolExecutor(1, thread_name_prefix="ggflip-score")

    def row_map(function: Callable[[Item], Out], items: Iterable[Item]) -> list[Out]:
        return list(rows_pool.map(function, items))

    pending: tuple[Batch, Future[Result], Leases] | None = None
    try:
        for batch in batches:
            try:
                with collect() as leases:
                    logits = clock.time("decode", decode, batch)
            except BaseException:
                # The batch scored meanwhile is finished work: hand it over before the error.
                if pending is not None:
                    last, pending = pending, None
                    yield last[0], clock.time("wait", last[1].result)
                raise
            work = batch_pool.submit(clock.time, "score", score, batch, logits, row_map)
            previous, pending = pending, (batch, work, leases)
            del logits
            if previous is not None:
                yield previous[0], clock.time("wait", previous[1].result)
                previous[2].give_back()
        if pending is not None:
            last, pending = pending, None
            yield last[0], clock.time("wait", last[1].result)
            last[2].give_back()
    finally:
        clock.report(workers)
        if pending is not None:
            pending[1].cancel()
        batch_pool.shutdown(wait=True, cancel_futures=True)
        rows_pool.shutdown(wait=True, cancel_futures=True)


class _Clock:
    """Seconds spent decoding, scoring, and waiting for scoring (the decode's idle time), logged
    at the end of a pass (`--log-file` keeps it) for benchmarks and the curious."""

    def __init__(self) -> None:
        self.seconds = {"decode": 0.0, "score": 0.0, "wait": 0.0}
        self.batches = 0

    def time(self, what: str, function: Callable[..., Out], *args: object) -> Out:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[what] += time.perf_counter() - started
            self.batches += what == "decode"

    def report(self, workers: int) -> None:
        log.info(
            "%d batches: decode %.3f s, scoring %.3f s on %s, decode waited %.3f s for scoring",
            self.batches,
            self.seconds["decode"],
            self.seconds["score"],
            f"{workers} thread(s) beside it" if workers else "the decode's thread",
            self.seconds["wait"] if workers else self.seconds["score"],
        )
