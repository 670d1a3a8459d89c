"""A llama-perplexity base file turned into ggflip's corpus baseline record, a chunk at a time.

Each stored row (`ggflip.corpus.llama_base`) is decoded as llama-perplexity decodes it, and the
tokens its `--kl-divergence` leaves out (a decoded log p at or below -16: every token below the
writer's window, and those just inside it) are given no probability. What remains is
normalized and reduced to every mode's baseline record by the kernel that reduces a model's own
logits (`ggflip.scoring.topk.baseline_normalize`: top K, tail mass, S tail draws, seeded by the
chunk and row as a corpus run seeds them), and the next token's log-prob is kept as decoded, so
PPL(base), Δp and the PPL ratio are llama-perplexity's own.

What the window does to KL. The tokens left out hold δ = 1 - Σ p of the kept ones (a few 1e-4 on
Gemma 3 270M, up to 1e-3 on flat rows). llama-perplexity sums p·log(p/q) over the kept tokens
with p as decoded, so it leaves out δ's own terms. ggflip's record is the kept tokens
normalized to 1, a proper distribution: its exact KL is llama's sum/(1 - δ) - log(1 - δ), about
δ above it, and the tail estimate then takes back about Q(left out)·P(tail)/Q(tail) ≈ δ (the
quant's mass on the left-out tokens, which the record says have none), so the two agree to
first order in δ when a row has a tail outside the top K; a row whose kept tokens all fit in the
top K reads about δ higher. docs/llama-base-files.md says this with measured numbers.

Memory: one block of `block_rows` rows (their uint16 codes and float32 log-probs) and one
chunk's record, whatever the file's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ggflip.corpus.cache import BaselineWriter
from ggflip.corpus.llama_base import LOGPROB_CUTOFF, Digest, LlamaBaseFile
from ggflip.corpus.spec import SAMPLING_SEED
from ggflip.gguf.header import read_header, scan_gguf
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import baseline_normalize

LEFT_OUT = np.float32(-1e4)
"""The log-prob a left-out token is given: exp() of it is 0 in float32 and float64, and unlike
-inf it keeps the kernels' differences finite."""

BOS_KEY = "tokenizer.ggml.bos_token_id"


@dataclass(frozen=True)
class Tokenizer:
    """What a GGUF of the base file's model says about its tokens."""

    path: Path
    n_vocab: int
    vocab_fingerprint: str
    architecture: str
    bos: int | None
    context_length: int | None


def tokenizer_of(path: Path) -> Tokenizer:
    """The vocabulary and BOS id of a GGUF, from its header (the model is not loaded).

    Raises:
        ModelFileError: missing, not a GGUF, or without a vocabulary.
    """
    header = read_header(path)
    bos = scan_gguf(path, lambda key: key == BOS_KEY).fields.get(BOS_KEY)
    return Tokenizer(
        path,
        header.n_vocab,
        header.vocab_fingerprint,
        header.architecture,
        int(bos) if isinstance(bos, int) else None,
        header.context_length,
    )


def decoded_tokens(stored: NDArray[np.int32], bos: int | None) -> NDArray[np.int32]:
    """The chunks as llama-perplexity decodes them: each chunk's first token replaced by BOS when
    the file was written with one (its first token is the model's BOS, which tokenizing with
    BOS put there), else as stored."""
    tokens = np.array(stored, dtype=np.int32)
    if bos is not None and tokens.size and int(tokens[0, 0]) == bos:
        tokens[:, 0] = bos
    return tokens


def record_logprobs(logprobs: NDArray[np.float32]) -> NDArray[np.float32]:
    """Decoded rows with the tokens llama-perplexity's KL leaves out set to `LEFT_OUT` (in
    place)."""
    logprobs[logprobs <= LOGPROB_CUTOFF] = LEFT_OUT
    return logprobs


def chunk_record(
    base: LlamaBaseFile,
    chunk: int,
    tokens: NDArray[np.int32],
    shape: tuple[int, int, int],
    digest: Digest | None = None,
) -> tuple[PositionRecord, NDArray[np.float64]]:
    """One chunk's scored rows as ggflip's record, and each scored position's next-token
    log-prob as decoded.

    Args:
        base: the file.
        chunk: which chunk.
        tokens: the chunk's n_ctx tokens.
        shape: (top K, tail draws, rows per block); a block's draws are seeded by the chunk and
            its first row, as a corpus run seeds a text's.
        digest: fed the rows' bytes in file order.
    """
    top_k, n_samples, block_rows = shape
    targets = np.asarray(tokens[base.first_scored + 1 :], dtype=np.int64)
    parts, target_logprobs = [], []
    for start in range(0, base.rows_per_chunk, block_rows):
        stop = min(start + block_rows, base.rows_per_chunk)
        logprobs = base.rows(chunk, start, stop, digest).logprobs()
        target_logprobs.append(logprobs[np.arange(stop - start), targets[start:stop]])
        rng = np.random.default_rng([chunk, SAMPLING_SEED, start])
        _, rows = baseline_normalize(record_logprobs(logprobs), top_k, n_samples, rng)
        parts.append(PositionRecord.of(rows))
    target = np.concatenate(target_logprobs).astype(np.float64)
    return PositionRecord.concatenate(parts), target


def import_chunks(
    base: LlamaBaseFile,
    writer: BaselineWriter,
    tokens: NDArray[np.int32],
    shape: tuple[int, int, int],
    digest: Digest | None = None,
) -> Iterator[tuple[int, NDArray[np.float64]]]:
    """Convert and write every chunk in file order, yielding (chunk, its next tokens'
    log-probs) after each; `digest`, fed the header and tokens before, ends holding the file."""
    for chunk in range(base.n_chunk):
        record, target = chunk_record(base, chunk, tokens[chunk], shape, digest)
        writer.write_chunk(chunk, tokens[chunk], record, target)
        yield chunk, target
