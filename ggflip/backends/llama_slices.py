"""The logits of one long request a ubatch at a time, mixed into `LlamaBackend`: corpus mode's
way to a long context without ctx × n_vocab floats alive (`Backend.logits_slices`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import ScoreRequest
from ggflip.backends.row_buffers import RowBuffers
from ggflip.errors import BackendError


class SlicedLogits:
    """`logits_slices` for a llama.cpp context; the class it is mixed into owns the context."""

    _lib: Any
    _batch: Any
    _memory: Any
    _n_ctx: int
    _n_batch: int
    _n_ubatch: int
    _path: Path
    _rows: RowBuffers

    if TYPE_CHECKING:  # provided by LlamaBackend

        def _forget_prefix(self) -> None: ...

        def _flush(
            self,
            n_tokens: int,
            pending: list[tuple[int, int, int]],
            results: list[NDArray[np.float32]],
        ) -> None: ...

    def logits_slices(self, request: ScoreRequest) -> Iterator[NDArray[np.float32]]:
        """One slice per ubatch that has scored rows. `logits` decodes a request alone in
        batches of n_batch tokens, which llama.cpp computes as ubatches of n_ubatch tokens from
        each batch's start; decoding each of those ubatches on its own computes the same ubatches
        in the same order (bit-identical logits, tested), with at most n_ubatch rows alive here
        and in llama.cpp's output buffer whatever the request's length."""
        if len(request.tokens) > self._n_ctx:
            raise BackendError(
                f"a prompt of {len(request.tokens)} tokens does not fit n_ctx={self._n_ctx}"
            )
        self._forget_prefix()
        self._lib.llama_memory_clear(self._memory, True)
        wanted = {pos: row for row, pos in enumerate(request.positions)}
        n_tokens, step = len(request.tokens), self._n_ubatch
        for batch_start in range(0, n_tokens, self._n_batch):
            batch_stop = min(batch_start + self._n_batch, n_tokens)
            for start in range(batch_start, batch_stop, step):
                out = self._decode_slice(request, wanted, start, min(start + step, batch_stop))
                if out is not None:
                    yield out

    def _decode_slice(
        self, request: ScoreRequest, wanted: dict[int, int], start: int, stop: int
    ) -> NDArray[np.float32] | None:
        """Decode tokens [start, stop) of `request` (sequence 0, after the ones before it); the
        rows of the wanted positions among them, or None when there are none."""
        rows = [wanted[pos] for pos in range(start, stop) if pos in wanted]
        out = self._rows.take([len(rows)])[0] if rows else None
        batch = self._batch
        pending = []
        for n, pos in enumerate(range(start, stop)):
            batch.token[n], batch.pos[n] = request.tokens[pos], pos
            batch.n_seq_id[n], batch.seq_id[n][0] = 1, 0
            batch.logits[n] = pos in wanted
            if pos in wanted:
                pending.append((n, 0, wanted[pos] - rows[0]))
        self._flush(stop - start, pending, [out] if out is not None else [])
        return out
