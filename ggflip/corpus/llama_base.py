"""llama-perplexity's `--kl-divergence-base` file, read one block of rows at a time.

The format, as tools/perplexity/perplexity.cpp writes it (`perplexity`, `process_logits`,
`log_softmax`) and reads it back (`kl_divergence`), native little-endian:

    8 bytes   "_logits_"
    int32     n_ctx, n_vocab, n_chunk
    int32     tokens[n_chunk * n_ctx]    the text's first n_chunk·n_ctx tokens, tokenized with
                                         BOS; each chunk's first token as in the text (llama.cpp
                                         puts BOS in its place only while decoding)
    per chunk, per scored position j = 0 .. n_ctx - 2 - n_ctx/2 (the logits at position
    n_ctx/2 + j, predicting token n_ctx/2 + j + 1), one row of 2·((n_vocab + 1)/2) + 4 uint16:
      float32 scale, float32 min_log_prob, uint16 q[n_vocab] (+ one uint16 of padding when
      n_vocab is odd); log p(i) = scale·q[i] + min_log_prob, in float32

The writer clips the row's logits to a window of W nats below its largest: min_logit =
max(min(logits), max_logit - W), scale = (max_logit - min_logit)/65535, q = round((logit -
min_logit)/scale) above the bottom and 0 at or below it, min_log_prob = min_logit - max_logit -
log Σ exp(logit - max_logit). So the top token decodes to its exact log-prob, every other token
within scale/2 (1.2e-4 nats at W = 16), and every token at or below the window decodes to the
bottom's log-prob. llama.cpp uses W = 16; ik_llama.cpp writes the same layout with W = 24, which
shows in the rows' scale (W/65535 on any row whose logits span the window): `window_nats` reads it
from the first chunk. Both tools' `--kl-divergence` then keep only tokens with a decoded log p
above -16 (`if (p_log_base > -16.f)`), whichever W wrote the file.

`LlamaBaseFile.open` checks the header against the file's length (one-line errors for a file that
is not this format, truncated or corrupt); `rows` reads a block of rows with one positioned read,
so nothing holds more of the file than the block asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ggflip.errors import DataError, VocabMismatchError
from ggflip.store.reading import read_named_file

MAGIC = b"_logits_"
HEADER_BYTES = len(MAGIC) + 3 * 4
LOGPROB_CUTOFF = -16.0  # kl_divergence's `p_log_base > -16.f`: tokens at or below it are left out
KNOWN_WINDOWS = (16, 24)  # llama.cpp's, ik_llama.cpp's


class Digest(Protocol):
    """What a hashlib object offers that the reader uses."""

    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class RowBlock:
    """Scored rows of one chunk as stored: (n,) scale and min_log_prob, (n, n_vocab) uint16."""

    scale: NDArray[np.float32]
    min_logprob: NDArray[np.float32]
    codes: NDArray[np.uint16]

    def logprobs(self) -> NDArray[np.float32]:
        """Each row decoded as llama-perplexity decodes it: scale·q + min_log_prob in float32."""
        values = self.codes.astype(np.float32)
        values *= self.scale[:, None]
        values += self.min_logprob[:, None]
        return values


@dataclass(frozen=True)
class LlamaBaseFile:
    """A checked `--kl-divergence-base` file: its header, and where its rows lie."""

    path: Path
    n_ctx: int
    n_vocab: int
    n_chunk: int
    file_size: int

    @classmethod
    def open(cls, path: Path) -> LlamaBaseFile:
        """Read and check the header of `path`.

        Raises:
            DataError: missing or unreadable, not this format, or a header inconsistent with the
                file's length (truncated, or bytes beyond what the header accounts for).
        """
        head = read_named_file(path, "llama-perplexity base file", DataError, HEADER_BYTES)
        if head[: len(MAGIC)] != MAGIC:
            raise DataError(
                f"{path}: not a llama-perplexity --kl-divergence-base file (it does not start "
                "with _logits_)"
            )
        if len(head) < HEADER_BYTES:
            raise DataError(f"{path}: truncated llama-perplexity base file ({len(head)} bytes)")
        n_ctx, n_vocab, n_chunk = (int(v) for v in np.frombuffer(head, "<i4", 3, len(MAGIC)))
        if n_ctx < 3 or n_vocab < 1 or n_chunk < 1:
            raise DataError(
                f"{path}: corrupt llama-perplexity base file header (n_ctx {n_ctx}, n_vocab "
                f"{n_vocab}, n_chunk {n_chunk})"
            )
        base = cls(path, n_ctx, n_vocab, n_chunk, path.stat().st_size)
        base._check_size()
        return base

    @property
    def first_scored(self) -> int:
        """The first scored logits row of a chunk: llama.cpp's `first = n_ctx/2`."""
        return self.n_ctx // 2

    @property
    def rows_per_chunk(self) -> int:
        """Scored positions per chunk: n_ctx - 1 - n_ctx/2."""
        return self.n_ctx - 1 - self.first_scored

    @property
    def row_width(self) -> int:
        """uint16 per stored row: two float32 and n_vocab codes, padded to an even count."""
        return 2 * ((self.n_vocab + 1) // 2) + 4

    @property
    def bytes_per_row(self) -> int:
        return 2 * self.row_width

    @property
    def rows_offset(self) -> int:
        """Byte offset of the first row: after the header and the tokens."""
        return HEADER_BYTES + 4 * self.n_ctx * self.n_chunk

    def expected_size(self, n_chunk: int | None = None) -> int:
        """The bytes a file of this header (or of its first `n_chunk` chunks) holds."""
        chunks = self.n_chunk if n_chunk is None else n_chunk
        return self.rows_offset + chunks * self.rows_per_chunk * self.bytes_per_row

    def _check_size(self) -> None:
        expected = self.expected_size()
        if self.file_size < expected:
            whole = max(self.file_size - self.rows_offset, 0) // (
                self.rows_per_chunk * self.bytes_per_row
            )
            raise DataError(
                f"{self.path}: truncated llama-perplexity base file: {self.file_size:,} bytes "
                f"of the {expected:,} its header (n_ctx {self.n_ctx}, n_vocab {self.n_vocab}, "
                f"{self.n_chunk} chunks) needs; {whole} chunks complete; copy or compute it "
                "again"
            )
        if self.file_size > expected:
            raise DataError(
                f"{self.path}: {self.file_size - expected:,} bytes more than its header (n_ctx "
                f"{self.n_ctx}, n_vocab {self.n_vocab}, {self.n_chunk} chunks) accounts for; "
                "not a llama-perplexity base file, or corrupt"
            )

    def tokens(self, digest: Digest | None = None) -> NDArray[np.int32]:
        """(n_chunk, n_ctx) token ids as stored (each chunk's first token as in the text);
        `digest` is fed the file's bytes up to them (the header and the tokens).

        Raises:
            DataError: an id outside the vocabulary (a corrupt file).
        """
        data = self._read(0, self.rows_offset)
        if digest is not None:
            digest.update(data)
        tokens = (
            np.frombuffer(data, "<i4", offset=HEADER_BYTES)
            .astype(np.int32)
            .reshape(self.n_chunk, self.n_ctx)
        )
        bad = np.flatnonzero((tokens < 0) | (tokens >= self.n_vocab))
        if bad.size:
            raise DataError(
                f"{self.path}: corrupt llama-perplexity base file: token {int(tokens.flat[bad[0]])}"
                f" at place {int(bad[0])} is outside its vocabulary of {self.n_vocab}"
            )
        return tokens

    def rows(self, chunk: int, start: int, stop: int, digest: Digest | None = None) -> RowBlock:
        """The stored rows [start, stop) of `chunk`'s scored positions, read with one positioned
        read (`digest` is fed their bytes, so reading every row in order digests the file).

        Raises:
            DataError: a row with a negative or non-finite scale or a non-finite min_log_prob.
        """
        n = stop - start
        offset = self.rows_offset + (chunk * self.rows_per_chunk + start) * self.bytes_per_row
        raw = self._read(offset, n * self.bytes_per_row)
        if digest is not None:
            digest.update(raw)
        data = np.frombuffer(raw, "<u2")
        rows = data.reshape(n, self.row_width)
        floats = np.ascontiguousarray(rows[:, :4]).view("<f4").astype(np.float32)
        block = RowBlock(floats[:, 0], floats[:, 1], rows[:, 4 : 4 + self.n_vocab])
        if not (
            np.isfinite(block.scale).all()
            and (block.scale >= 0).all()
            and np.isfinite(block.min_logprob).all()
        ):
            raise DataError(
                f"{self.path}: corrupt llama-perplexity base file: chunk {chunk + 1} has a row "
                "whose scale or minimum is not a finite number"
            )
        return block

    def window_nats(self) -> float:
        """The writer's window W (16: llama.cpp, 24: ik_llama.cpp), from the widest row of the
        first chunk: a known W when that row's span is within 0.1 nat of it, else its span."""
        spans = [
            float(self.rows(0, start, min(start + 64, self.rows_per_chunk)).scale.max()) * 65535
            for start in range(0, self.rows_per_chunk, 64)
        ]
        widest = max(spans)
        known = [w for w in KNOWN_WINDOWS if abs(widest - w) < 0.1]
        return float(known[0]) if known else round(widest, 3)

    def check_vocabulary(self, n_vocab: int, model: Path) -> None:
        """Refuse a model whose vocabulary size is not the file's.

        Raises:
            VocabMismatchError: naming both sizes.
        """
        if n_vocab != self.n_vocab:
            raise VocabMismatchError(
                f"{model}: vocabulary of {n_vocab:,} tokens, but llama-perplexity base file "
                f"{self.path} was computed with {self.n_vocab:,}; use a quant of the model that "
                "wrote the base file"
            )

    def _read(self, offset: int, n_bytes: int) -> bytes:
        """`n_bytes` from `offset`, by positioned reads (the file is never mapped or held)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise DataError(
                f"{self.path}: cannot read llama-perplexity base file: {exc.strerror}"
            ) from None
        parts, done = [], 0
        try:
            while done < n_bytes:
                part = os.pread(fd, min(n_bytes - done, 1 << 30), offset + done)
                if not part:
                    break
                parts.append(part)
                done += len(part)
        finally:
            os.close(fd)
        if done != n_bytes:
            raise DataError(
                f"{self.path}: truncated llama-perplexity base file (changed while being read)"
            )
        return parts[0] if len(parts) == 1 else b"".join(parts)
