"""Reused memory for the logits rows a backend returns, handed out again only once its lease is
back (`ggflip.backends.leases`)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.leases import lease


class RowBuffers:
    """Memory for the logits rows `logits` returns, handed out again only once its lease is back.

    A fresh array of a corpus chunk's 255 rows is 267 MB whose first touch costs a page fault per
    4 KiB page: measured at 0.6 s per chunk on a 2-core VM (2.5 s where the host had to find the
    memory too), against ~1.8 s for the decode itself. So the memory of earlier calls is reused,
    but only a buffer whose lease (`ggflip.backends.leases`) was given back: the pipeline gives a
    batch's leases back once it is scored and consumed; memory taken outside the pipeline is
    never reused. At most `KEEP` buffers are pooled; past that a buffer is plain memory.
    """

    KEEP = 3

    def __init__(self, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        self._pool: list[NDArray[np.float32]] = []
        self._leased: set[int] = set()  # ids of pooled buffers out on lease
        self._lock = threading.Lock()

    def take(self, counts: Sequence[int]) -> list[NDArray[np.float32]]:
        """One (count, n_vocab) float32 array per count, in one buffer nobody holds a lease on."""
        need = sum(counts) * self._n_vocab
        with self._lock:
            free = [b for b in self._pool if id(b) not in self._leased]
            buffer = next((b for b in free if b.size >= need), None)
            if buffer is None:
                buffer = np.empty(need, dtype=np.float32)
                if len(self._pool) < self.KEEP:
                    self._pool.append(buffer)
                elif free:  # replace the smallest free one, which was too small
                    smallest = min(free, key=lambda b: b.size)
                    self._pool = [buffer if b is smallest else b for b in self._pool]
            if any(b is buffer for b in self._pool):
                self._leased.add(id(buffer))
                lease(functools.partial(self._give_back, id(buffer)))
        out, start = [], 0
        for count in counts:
            stop = start + count * self._n_vocab
            out.append(buffer[start:stop].reshape(count, self._n_vocab))
            start = stop
        return out

    def _give_back(self, key: int) -> None:
        with self._lock:
            self._leased.discard(key)
