"""Batched greedy generation over a loaded llama.cpp context, mixed into `LlamaBackend`.

The prompts are cut into waves that fit `n_seq_max` sequences and the KV cache; a prefix every
prompt names as shared is decoded once into sequence 0 and copied to each prompt's sequence.
Each wave prefills its prompts (logits only at each prompt's last token), then decodes one
token per live sequence per step, all live sequences in one `llama_decode`, logits only at
those tokens; a finished sequence leaves the batch. `backends.greedy` picks each token and
decides when a sequence ends, as for every backend.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import GenerateRequest, Generation, ScoreRequest
from ggflip.backends.greedy import LENGTH, GreedySequence, top_margins
from ggflip.errors import BackendError


class GreedyGeneration:
    """`generate` for a llama.cpp context; the class it is mixed into owns the context."""

    _lib: Any
    _ctx: Any
    _batch: Any
    _memory: Any
    _vocab: Any
    _n_vocab: int
    _n_ctx: int
    _n_cells: int
    _n_seq_max: int
    _path: Path
    _share_prefixes: bool
    _cached_prefix: tuple[int, ...] | None

    if TYPE_CHECKING:  # provided by LlamaBackend, which decodes prompts for scoring too

        def _forget_prefix(self) -> None: ...

        @staticmethod
        def _waves(
            requests: Sequence[ScoreRequest], max_seqs: int, max_cells: int
        ) -> list[list[int]]: ...

        def _decode_wave(
            self,
            wave: list[tuple[int, int, ScoreRequest, int]],
            results: list[NDArray[np.float32]],
        ) -> None: ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        for request in requests:
            if len(request.tokens) + request.max_new_tokens > self._n_ctx:
                raise BackendError(
                    f"a prompt of {len(request.tokens)} tokens and {request.max_new_tokens} new "
                    f"ones do not fit n_ctx={self._n_ctx} (raise n_ctx in models.toml)"
                )
        prefix = self._common_generation_prefix(requests)
        budget = self._n_cells - len(prefix)
        seqs = self._n_seq_max - 1 if prefix else self._n_seq_max
        sized = [
            ScoreRequest(r.tokens[len(prefix) :] + (0,) * r.max_new_tokens, ()) for r in requests
        ]
        for wave in self._waves(sized, max(seqs, 1), budget):
            sequences = [self._greedy(requests[i]) for i in wave]
            self._generate_wave(prefix, sequences)
            for index, sequence in zip(wave, sequences):
                results[index] = sequence.result()
        return [r for r in results if r is not None]

    def _greedy(self, request: GenerateRequest) -> GreedySequence:
        sequence = GreedySequence(request, self._piece_bytes, self._is_end)
        if request.max_new_tokens <= 0:
            sequence.finish = LENGTH
        return sequence

    def _is_end(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def _piece_bytes(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(256)
        size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[: max(size, 0)]

    def _common_generation_prefix(self, requests: Sequence[GenerateRequest]) -> tuple[int, ...]:
        """The prefix every request names as shared (empty when they disagree or sharing is off)."""
        if not self._share_prefixes or not requests:
            return ()
        n = min(max(0, min(r.shared_prefix, len(r.tokens) - 1)) for r in requests)
        prefix = requests[0].tokens[:n]
        if n == 0 or any(r.tokens[:n] != prefix for r in requests):
            return ()
        return prefix

    def _generate_wave(self, prefix: tuple[int, ...], sequences: list[GreedySequence]) -> None:
        """Prefill each live sequence's prompt (after the shared prefix), then step them all."""
        first_seq = 1 if prefix else 0
        if prefix:
            if self._cached_prefix != prefix:
                self._lib.llama_memory_clear(self._memory, True)
                self._decode_wave([(0, -1, ScoreRequest(prefix, ()), 0)], [])
                self._cached_prefix = prefix
            for seq in range(1, self._n_seq_max):
                self._lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
            for seq in range(1, len(sequences) + 1):
                self._lib.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)
        else:
            self._forget_prefix()
            self._lib.llama_memory_clear(self._memory, True)
        live = [(first_seq + i, s) for i, s in enumerate(sequences) if s.live]
        rows = [np.empty((1, self._n_vocab), dtype=np.float32) for _ in live]
        self._decode_wave(
            [
                (seq, row, ScoreRequest(s.request.tokens, (s.position,)), len(prefix))
                for row, (seq, s) in enumerate(live)
            ],
            rows,
        )
        for (_, sequence), logits in zip(live, rows):
            sequence.step(logits[0])
        while live := [(seq, s) for seq, s in live if s.live]:
            self._step(live)

    def _step(self, live: list[tuple[int, GreedySequence]]) -> None:
        """One decode of every live sequence's last token; the next tokens and their margins
        chosen for all of them at once, from the rows llama.cpp leaves in batch order."""
        batch = self._batch
        for slot, (seq, sequence) in enumerate(live):
            batch.token[slot] = sequence.tokens[-1]
            batch.pos[slot] = sequence.position
            batch.n_seq_id[slot] = 1
            batch.seq_id[slot][0] = seq
            batch.logits[slot] = True
        batch.n_tokens = len(live)
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise BackendError(f"{self._path}: llama_decode failed with status {status}")
        pointer = self._lib.llama_get_logits(self._ctx)
        rows = np.ctypeslib.as_array(pointer, shape=(len(live), self._n_vocab))
        tokens, margins = top_margins(rows)
        for (_, sequence), token, margin in zip(live, tokens.tolist(), margins.tolist()):
            sequence.choose(token, margin)
