"""The compact corpus baseline: per scored token, the baseline's top K plus its tail mass, on disk.

llama-perplexity's `--kl-divergence-base` file keeps 16-bit log-probs of the whole vocabulary
for every scored token (2·n_vocab + 8 bytes: 512 KiB with Gemma's 262,144 tokens). ggflip keeps
per token every mode's baseline record (`ggflip.scoring.record.PositionRecord`): the top K token
ids (int32) and log-probs (float64: float32 would round a log-prob of -10 by ~5e-7, up to 1e-7 of
KL), the log of the probability left outside them (float64) and S ids drawn from the tail with
their log-probs (int32 + float64); and the log-prob of the actual next token (float64):
12·K + 12·S + 16 bytes, 6,544 bytes at K=512, S=32, 80x smaller for Gemma.
KL from it is the exact KL of the top K plus the merged tail (a lower bound) plus an unbiased
estimate of the rest from the tail draws (`ggflip.scoring.topk`).
PPL, Δp and same-top need only the stored values and are exact.

An entry is a folder `<cache>/corpus/<key>/` of `.npy` arrays and a `meta.json` holding each
array's sha256. It is built in a temporary folder and renamed into place after `meta.json` is
written, so it is complete or absent. Arrays are memory-mapped when read, so the quant pass
holds one chunk's rows at a time, whatever the corpus length.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ggflip.errors import CacheError, DiskFullError
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import BaselineRows
from ggflip.store.atomic import atomic_write_bytes
from ggflip.store.reading import file_sha256

CORPUS_CACHE_FORMAT = 2
ARRAYS = ("tokens", "target_logprob", *PositionRecord.NAMES)  # one .npy file each
log = logging.getLogger("ggflip.corpus.cache")


def llama_cpp_bytes_per_token(n_vocab: int) -> int:
    """Bytes per scored token in llama-perplexity's KL base file (uint16 rows plus scale/min)."""
    return 2 * (2 * ((n_vocab + 1) // 2) + 4)


def bytes_per_token(k: int, n_samples: int) -> int:
    """Bytes per scored token in ggflip's corpus baseline with top `k` and `n_samples` tail
    draws: the baseline record and the next token's log-prob."""
    return PositionRecord.bytes_per_row(k, n_samples) + np.dtype(np.float64).itemsize


@dataclass(frozen=True)
class CorpusBaseline:
    """The baseline's record of a corpus; rows are scored tokens in chunk order.

    Attributes:
        tokens: (n_chunks, ctx) int32, as decoded (BOS in front).
        positions: every mode's baseline record of the n_rows scored tokens (memory-mapped).
        target_logprob: (n_rows,) float64 log-prob of each scored token's next token.
    """

    folder: Path
    meta: Mapping[str, Any]
    tokens: NDArray[np.int32]
    positions: PositionRecord
    target_logprob: NDArray[np.float64]

    @property
    def rows_per_chunk(self) -> int:
        return self.positions.n_rows // max(self.tokens.shape[0], 1)

    def rows(self, chunk: int) -> slice:
        """The rows of one chunk's scored tokens."""
        per = self.rows_per_chunk
        return slice(chunk * per, (chunk + 1) * per)

    def nbytes(self) -> int:
        """Size on disk of the entry (every array, its headers and meta.json)."""
        return sum(path.stat().st_size for path in self.folder.iterdir())


def _disk_error(where: Path, exc: OSError) -> Exception:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"{where}: disk full while writing the corpus baseline; free space and re-run"
        )
    return CacheError(f"{where}: cannot write the corpus baseline: {exc.strerror}")


class BaselineWriter:
    """Fills a new corpus baseline chunk by chunk in a temporary folder, then publishes it."""

    def __init__(
        self,
        root: Path | None,
        key: str,
        n_chunks: int,
        ctx: int,
        rows_per_chunk: int,
        k: int,
        n_samples: int,
    ) -> None:
        self._final = root / "corpus" / key if root else None
        try:
            if root:
                (root / "corpus").mkdir(parents=True, exist_ok=True)
            parent = str(root / "corpus") if root else None
            self.folder = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=parent))
            n_rows = n_chunks * rows_per_chunk
            shapes = {
                "tokens": ((n_chunks, ctx), np.int32),
                "target_logprob": ((n_rows,), np.float64),
                **PositionRecord.shapes(n_rows, k, n_samples),
            }
            self._arrays = {
                name: np.lib.format.open_memmap(
                    self.folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape
                )
                for name, (shape, dtype) in shapes.items()
            }
        except OSError as exc:
            raise _disk_error(root or Path(tempfile.gettempdir()), exc) from None
        self._rows_per_chunk = rows_per_chunk

    def write_chunk(
        self,
        chunk: int,
        tokens: NDArray[np.integer],
        rows: BaselineRows,
        target_logprob: NDArray[np.float64],
    ) -> None:
        """Store one chunk's tokens, its scored rows' record and their next tokens' log-probs."""
        self._arrays["tokens"][chunk] = tokens
        start = chunk * self._rows_per_chunk
        self._arrays["target_logprob"][start : start + self._rows_per_chunk] = target_logprob
        PositionRecord.of(self._arrays).put(start, rows)

    def finish(self, meta: Mapping[str, Any]) -> CorpusBaseline:
        """Flush, checksum and publish the entry (renamed into the cache when it has one)."""
        try:
            for array in self._arrays.values():
                array.flush()
            sums = {name: file_sha256(self.folder / f"{name}.npy") for name in ARRAYS}
            document = {"format": CORPUS_CACHE_FORMAT, "sha256": sums, **meta}
            atomic_write_bytes(
                self.folder / "meta.json", json.dumps(document, indent=1, sort_keys=True).encode()
            )
            del self._arrays
            folder = self.folder
            if self._final is not None:
                if self._final.exists():
                    shutil.rmtree(self._final)
                os.replace(self.folder, self._final)
                folder = self._final
        except OSError as exc:
            self.discard()
            raise _disk_error(self.folder, exc) from None
        baseline = open_baseline(folder, verify=False)
        assert baseline is not None
        return baseline

    def discard(self) -> None:
        """Remove the unfinished entry."""
        self.__dict__.pop("_arrays", None)
        shutil.rmtree(self.folder, ignore_errors=True)


def open_baseline(folder: Path, *, verify: bool = True) -> CorpusBaseline | None:
    """Memory-map a published entry; None when absent, or damaged (checksum, format: logged)."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CORPUS_CACHE_FORMAT:
            raise ValueError("format mismatch")
        if verify:
            for name in ARRAYS:
                if file_sha256(folder / f"{name}.npy") != meta["sha256"][name]:
                    raise ValueError(f"{name}.npy checksum mismatch")
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("corpus baseline %s is damaged (%s); recomputing it", folder, exc)
        return None
    return CorpusBaseline(
        folder=folder,
        meta=meta,
        tokens=arrays["tokens"],
        positions=PositionRecord.of(arrays),
        target_logprob=arrays["target_logprob"],
    )


def load_baseline(
    root: Path, key: str, n_chunks: int | None, ctx: int, k: int, n_samples: int
) -> CorpusBaseline | None:
    """The cached baseline for `key` if present, intact and of the expected shape (any chunk count
    if None)."""
    baseline = open_baseline(root / "corpus" / key)
    if baseline is None:
        return None
    chunks_ok = n_chunks is None or baseline.tokens.shape[0] == n_chunks
    widths = (baseline.tokens.shape[1], baseline.positions.k, baseline.positions.n_samples)
    if not chunks_ok or widths != (ctx, k, n_samples):
        log.warning("corpus baseline %s has an unexpected shape; recomputing it", baseline.folder)
        return None
    return baseline
