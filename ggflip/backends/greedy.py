"""Greedy decoding bookkeeping shared by every backend: argmax, stop strings, end of generation.

A backend owns how logits are computed (one batched decode per step for llama.cpp); a
`GreedySequence` per request turns each step's logits row into the next token and decides
when the sequence ends, so every backend stops and cuts text the same way. The argmax is
numpy's (the first of equal maxima), and the text is decoded from the tokens' raw bytes, so
a character split across tokens is whole once its last byte arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import GenerateRequest, Generation, ScoreRequest

EOS, STOP, LENGTH = "eos", "stop", "length"


def top_margin(row: NDArray[np.floating]) -> tuple[int, float]:
    """The argmax of a logits row and its lead over the runner-up (0 for a tie)."""
    tokens, margins = top_margins(row[np.newaxis])
    return int(tokens[0]), float(margins[0])


def top_margins(rows: NDArray[np.floating]) -> tuple[NDArray[np.intp], NDArray[np.floating]]:
    """The argmax of each logits row and its lead over the row's runner-up (0 for a tie), for
    every row at once.

    Two linear passes over the rows (argmax; then the max with each argmax entry set to -inf,
    put back after) rather than a partition of each row or a pass per sequence: on a
    262,144-token vocabulary a partition costs ~1.5 ms per row. The rows are changed only
    while this runs.
    """
    tokens = np.argmax(rows, axis=1)
    if rows.shape[1] < 2:
        return tokens, np.full(rows.shape[0], np.inf)
    index = np.arange(rows.shape[0])
    best = rows[index, tokens].copy()
    rows[index, tokens] = -np.inf
    try:
        runner_up = rows.max(axis=1)
    finally:
        rows[index, tokens] = best
    return tokens, (best - runner_up).astype(np.float64)


class GreedySequence:
    """One request's greedy continuation, fed one logits row per step."""

    def __init__(
        self,
        request: GenerateRequest,
        piece_bytes: Callable[[int], bytes],
        is_end: Callable[[int], bool],
    ) -> None:
        self.request = request
        self._piece_bytes = piece_bytes
        self._is_end = is_end
        self.tokens: list[int] = []
        self.margins: list[float] = []
        self._bytes = bytearray()
        self.finish: str | None = None
        self._cut: int | None = None

    @property
    def live(self) -> bool:
        return self.finish is None

    @property
    def position(self) -> int:
        """Where the last generated token sits in the sequence (its KV cell position)."""
        return len(self.request.tokens) + len(self.tokens) - 1

    def step(self, row: NDArray[np.floating]) -> int:
        """Choose the next token from the logits after the sequence so far; returns it."""
        return self.choose(*top_margin(row))

    def choose(self, token: int, margin: float) -> int:
        """Take `token`, the argmax of the next logits row, `margin` ahead of the runner-up;
        returns it."""
        self.tokens.append(token)
        self.margins.append(margin)
        if self._is_end(token):
            self.finish = EOS
            return token
        self._bytes += self._piece_bytes(token)
        if self.request.stop:
            text = self._bytes.decode("utf-8", errors="replace")
            hits = [i for i in (text.find(s) for s in self.request.stop) if i >= 0]
            if hits:
                self._cut = min(hits)
                self.finish = STOP
                return token
        if len(self.tokens) >= self.request.max_new_tokens:
            self.finish = LENGTH
        return token

    def result(self) -> Generation:
        """The finished generation."""
        text = self._bytes.decode("utf-8", errors="replace")
        if self._cut is not None:
            text = text[: self._cut]
        return Generation(tuple(self.tokens), text, self.finish or LENGTH, tuple(self.margins))


def generate_by_logits(
    logits: Callable[[Sequence[ScoreRequest]], list[NDArray[np.float32]]],
    requests: Sequence[GenerateRequest],
    piece_bytes: Callable[[int], bytes],
    is_end: Callable[[int], bool],
) -> list[Generation]:
    """Greedy generation through a `logits` call per step (no KV cache): the reference loop.

    Each step asks, in one call, for the next-token logits of every live sequence; a backend
    without incremental decoding (the fake) generates with it, and tests compare against it.
    """
    sequences = [GreedySequence(r, piece_bytes, is_end) for r in requests]
    for sequence in sequences:
        if sequence.request.max_new_tokens <= 0:
            sequence.finish = LENGTH
    while True:
        live = [s for s in sequences if s.live]
        if not live:
            break
        wanted = [
            ScoreRequest(
                s.request.tokens + tuple(s.tokens),
                (len(s.request.tokens) + len(s.tokens) - 1,),
                s.request.shared_prefix,
            )
            for s in live
        ]
        for sequence, rows in zip(live, logits(wanted)):
            sequence.step(rows[0])
    return [s.result() for s in sequences]
