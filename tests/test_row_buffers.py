"""The llama backend's reused logits memory (`RowBuffers`): a buffer is handed out again only
once no array views it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ggflip.backends.base import ScoreRequest
from ggflip.backends.llama import LlamaBackend, RowBuffers
from ggflip.config.models_toml import LlamaSettings


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_a_buffer_is_reused_only_when_nothing_views_it() -> None:
    rows = RowBuffers(n_vocab=10)
    first = rows.take([3, 2])
    assert [a.shape for a in first] == [(3, 10), (2, 10)]
    start = _address(first[0])
    kept = first[1][1:]  # a view of a view keeps the whole buffer
    del first
    second = rows.take([4])
    assert not np.shares_memory(second[0], kept)
    del kept
    third = rows.take([5])  # the first buffer is free again, and large enough
    assert _address(third[0]) == start
    assert not np.shares_memory(third[0], second[0])


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
