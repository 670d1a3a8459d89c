"""An independent writer of llama-perplexity `--kl-divergence-base` files, for tests.

Written from tools/perplexity/perplexity.cpp (`perplexity` writes the header and tokens,
`log_softmax(n_vocab, logits, log_prob, tok)` encodes one row), not from ggflip's reader, so the
reader's tests compare two readings of the C++ source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def encode_row(logits: NDArray[np.floating], window: float = 16.0) -> NDArray[np.uint16]:
    """One stored row: float32 scale and min_log_prob as four uint16, then the n_vocab codes,
    padded to 2·((n_vocab + 1)/2) + 4 uint16 (perplexity.cpp's `nv`)."""
    x = np.asarray(logits, dtype=np.float32)
    n_vocab = x.size
    max_logit = np.float32(x.max())
    min_logit = np.float32(max(np.float32(x.min()), np.float32(max_logit - np.float32(window))))
    sum_exp = float(np.exp(x - max_logit).astype(np.float64).sum())  # expf terms, double sum
    log_sum_exp = np.float32(np.log(sum_exp))
    min_log_prob = np.float32(min_logit - max_logit - log_sum_exp)
    scale = np.float32((max_logit - min_logit) / np.float32(65535.0))
    width = 2 * ((n_vocab + 1) // 2) + 4
    row = np.zeros(width, dtype=np.uint16)
    row[:4] = np.array([scale, min_log_prob], dtype=np.float32).view(np.uint16)
    if scale:
        inv_scale = np.float32(1.0) / scale
        codes = np.rint(inv_scale * (x - min_logit)).astype(np.int64)  # nearest_int
        row[4 : 4 + n_vocab] = np.where(x > min_logit, codes, 0).astype(np.uint16)
    return row


def write_base_file(
    path: Path,
    tokens: NDArray[np.integer],
    rows: Sequence[NDArray[np.floating]],
    n_vocab: int,
    window: float = 16.0,
) -> None:
    """Write a base file of `tokens` ((n_chunk, n_ctx)) and, per chunk, its scored rows' logits
    ((n_ctx - 1 - n_ctx/2, n_vocab) each), as perplexity.cpp lays it out."""
    n_chunk, n_ctx = tokens.shape
    with path.open("wb") as out:
        out.write(b"_logits_")
        out.write(np.array([n_ctx, n_vocab, n_chunk], dtype="<i4").tobytes())
        out.write(np.asarray(tokens, dtype="<i4").tobytes())
        for chunk_logits in rows:
            assert chunk_logits.shape == (n_ctx - 1 - n_ctx // 2, n_vocab)
            for logits in chunk_logits:
                out.write(encode_row(logits, window).tobytes())


def true_logprobs(logits: NDArray[np.floating]) -> NDArray[np.float64]:
    """log_softmax in float64, the value each code approximates."""
    x = np.asarray(logits, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))
