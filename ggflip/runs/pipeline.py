"""Overlap llama.cpp's decodes with the numpy scoring of the rows they return.

Every mode has the same loop: decode a batch, turn its logits rows into numbers (normalizers, the
baseline's record, KL), store them, decode the next. `overlapped` runs that loop as a pipeline:
the decode of batch i + 1 runs in the calling thread (every llama.cpp call of a model stays in one
thread) while batch i is scored by a pool of scoring threads; llama-cpp-python's ctypes calls and
numpy's large loops both release the GIL, so the two run at once. Results come back in batch
order and are the same numbers as the serial loop: a batch's scoring depends only on that batch.

Memory stays bounded: a batch's logits are its own arrays (the backend copies each row out of
llama.cpp's buffer before the next decode), and at most two batches' logits are alive, the one
being scored and the one being decoded.

`scoring_workers` sizes the pool to the cores llama.cpp is not using: on a CPU run llama.cpp's
threads compute the decode and a scoring thread on the same cores would slow it more than it
gains, so with every core given to llama.cpp the loop stays serial; with the model offloaded to a
GPU, llama.cpp leaves the CPU cores idle and all but one score.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ggflip.config.models_toml import LlamaSettings

Batch = TypeVar("Batch")
Logits = TypeVar("Logits")
Result = TypeVar("Result")
Item = TypeVar("Item")
Out = TypeVar("Out")

# More scoring threads than this stop paying: each row's Python share holds the GIL.
MAX_WORKERS = 8

RowMap = Callable[[Callable[[Item], Out], Iterable[Item]], list[Out]]
"""Maps a function over a batch's row blocks: in the scoring pool, or in the calling thread."""


def scoring_workers(requested: int | None, settings: LlamaSettings) -> int:
    """Scoring threads for a model run with `settings`: `requested` when given (0: no overlap),
    else the cores llama.cpp does not use (all but one when layers are offloaded to a GPU)."""
    if requested is not None:
        return max(0, requested)
    cores = os.cpu_count() or 1
    free = cores - 1 if settings.n_gpu_layers != 0 else cores - settings.resolved_threads()
    return max(0, min(free, MAX_WORKERS))


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

    Raises:
        Whatever `decode` or `score` raises, at the batch it belongs to; the batches after it are
        not scored.
    """
    if workers <= 0:
        for batch in batches:
            yield batch, score(batch, decode(batch), serial_map)
        return
    rows_pool = ThreadPoolExecutor(workers, thread_name_prefix="ggflip-rows")
    batch_pool = ThreadPoolExecutor(1, thread_name_prefix="ggflip-score")

    def row_map(function: Callable[[Item], Out], items: Iterable[Item]) -> list[Out]:
        return list(rows_pool.map(function, items))

    pending: tuple[Batch, Future[Result]] | None = None
    try:
        for batch in batches:
            logits = decode(batch)
            previous, pending = pending, (batch, batch_pool.submit(score, batch, logits, row_map))
            del logits
            if previous is not None:
                yield previous[0], previous[1].result()
        if pending is not None:
            last, pending = pending, None
            yield last[0], last[1].result()
    finally:
        if pending is not None:
            pending[1].cancel()
        batch_pool.shutdown(wait=True, cancel_futures=True)
        rows_pool.shutdown(wait=True, cancel_futures=True)
