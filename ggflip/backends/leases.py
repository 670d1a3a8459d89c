"""Leases on memory a backend hands out and takes back only when it is explicitly returned.

The llama backend reuses the memory of the logits rows it returns (`RowBuffers`). Whether a
scoring thread still reads a buffer cannot be told from Python's reference counts (CPython 3.14
reads through borrowed references that are not counted), so each pooled buffer handed out is
leased, and is handed out again only once that lease is given back. `overlapped`
(`ggflip.runs.pipeline`) gathers the leases taken by each decode (`collect`) and gives them back
once that batch is scored and its consumer has asked for the next one. A lease taken outside any
`collect` is never given back: that memory stays its caller's and is never handed out again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Lease:
    """One borrowed piece of memory; `give_back` hands it back to its owner once."""

    def __init__(self, on_return: Callable[[], None]) -> None:
        self._on_return: Callable[[], None] | None = on_return
        self._lock = threading.Lock()

    def give_back(self) -> None:
        """Return the memory to its owner (a second call does nothing)."""
        with self._lock:
            on_return, self._on_return = self._on_return, None
        if on_return is not None:
            on_return()


class Leases:
    """The leases taken inside one `collect` block."""

    def __init__(self) -> None:
        self._held: list[Lease] = []

    def add(self, lease: Lease) -> None:
        """Hold `lease` until `give_back`."""
        self._held.append(lease)

    def give_back(self) -> None:
        """Give back every lease held: nothing reads their memory any more."""
        held, self._held = self._held, []
        for lease in held:
            lease.give_back()

    def __len__(self) -> int:
        return len(self._held)


_scope = threading.local()


@contextmanager
def collect() -> Iterator[Leases]:
    """Gather the leases taken in this thread inside the block into the `Leases` it yields."""
    leases = Leases()
    outer = getattr(_scope, "leases", None)
    _scope.leases = leases
    try:
        yield leases
    finally:
        _scope.leases = outer


def lease(on_return: Callable[[], None]) -> Lease:
    """A new lease that calls `on_return` when given back, held by this thread's innermost
    `collect` (outside any, nobody holds it and it is never given back)."""
    taken = Lease(on_return)
    leases: Leases | None = getattr(_scope, "leases", None)
    if leases is not None:
        leases.add(taken)
    return taken
