"""The llama backend's reused logits memory (`RowBuffers`): a buffer is handed out again only
once its lease is given back, whatever Python's reference counts say."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.leases import collect
from ggflip.backends.llama import LlamaBackend
from ggflip.backends.row_buffers import RowBuffers
from ggflip.config.models_toml import LlamaSettings
from ggflip.runs.pipeline import overlapped


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_a_buffer_is_reused_only_once_its_lease_is_given_back() -> None:
    rows = RowBuffers(n_vocab=10)
    with collect() as leases:
        first = rows.take([3, 2])
    assert [a.shape for a in first] == [(3, 10), (2, 10)] and len(leases) == 1
    start = _address(first[0])
    del first  # no Python reference is left, but the lease is still out
    with collect() as second_leases:
        second = rows.take([4])
    assert _address(second[0]) != start
    leases.give_back()
    with collect():
        third = rows.take([5])  # the first buffer is back, and large enough
    assert _address(third[0]) == start
    assert not np.shares_memory(third[0], second[0])
    second_leases.give_back()
    second_leases.give_back()  # a second return changes nothing
    assert _address(rows.take([1])[0]) == _address(second[0])


def test_memory_taken_outside_a_lease_scope_is_never_handed_out_again() -> None:
    rows = RowBuffers(n_vocab=4)
    kept = {_address(rows.take([2])[0]) for _ in range(RowBuffers.KEEP)}
    assert len(kept) == RowBuffers.KEEP  # the arrays are gone, their memory stays theirs
    assert {_address(rows.take([2])[0]) for _ in range(5)}.isdisjoint(kept)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_batch_being_scored_is_never_overwritten_by_the_next_decode(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch is read again after the next batch has decoded; the reference counts are made
    to lie (as CPython 3.14's borrowed references can): the old count-based pool handed the
    scored batch's buffer to the next decode."""
    monkeypatch.setattr(sys, "getrefcount", lambda _: 1)
    rows = RowBuffers(n_vocab=8)
    decoded = {b: threading.Event() for b in range(7)}

    def decode(batch: int) -> list[np.ndarray]:
        arrays = rows.take([2, 1])
        for array in arrays:
            array.fill(batch)
        decoded[batch].set()
        return arrays

    def score(batch: int, logits: list[np.ndarray], _: Any) -> float:
        if workers and batch + 1 in decoded:
            assert decoded[batch + 1].wait(5)  # the next batch has decoded meanwhile
        return float(sum(float(a.sum()) for a in logits))

    got = list(overlapped(range(7), decode, score, workers))
    assert got == [(b, 24.0 * b) for b in range(7)]
    assert len(rows._pool) == 2 if workers else len(rows._pool) == 1  # and reused


def test_a_buffer_too_small_is_not_reused_and_the_pool_stays_bounded() -> None:
    rows = RowBuffers(n_vocab=4)
    small = _address(rows.take([1])[0])
    big = rows.take([8])[0]
    assert _address(big) != small and big.shape == (8, 4)
    held = [rows.take([2])[0] for _ in range(6)]  # all alive: each is new memory
    assert len({_address(a) for a in held}) == 6
    assert len(rows._pool) <= RowBuffers.KEEP


def test_logits_of_a_later_call_never_overwrite_earlier_ones(tiny_gguf_dir: Path) -> None:
    backend = LlamaBackend(tiny_gguf_dir / "base.gguf", LlamaSettings(n_ctx=128, n_threads=1))
    try:
        tokens = tuple(backend.tokenize("the cat sat on the mat and the", add_bos=True))
        request = ScoreRequest(tokens, tuple(range(len(tokens) - 1)))
        first = backend.logits([request])[0]
        want = first.copy()
        other = backend.logits([ScoreRequest(tokens[:4], (1, 2))])[0]
        again = backend.logits([request])[0]
        assert not np.shares_memory(first, other) and not np.shares_memory(first, again)
        assert np.array_equal(first, want) and np.array_equal(again, want)
    finally:
        backend.close()
