"""The texts of a corpus run and how each is cut into chunks, as llama-perplexity would cut it.

A run scores one text or several: `--text a.txt --text b.txt`, or `--text folder/` for every
file directly in the folder (hidden ones skipped, in name order). Each text is a **category**,
named by its file name, and is tokenized and chunked on its own, exactly as
`llama-perplexity -f that-file` would: chunks never cross files, so a category's statistics equal
those of a run on that file alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ggflip.errors import DataError, UsageError
from ggflip.store.reading import read_named_file


@dataclass(frozen=True)
class CorpusText:
    """One text of a corpus run: its category name, where it came from, and its content."""

    name: str
    source: str
    text: str

    @property
    def sha256(self) -> str:
        """Digest of the text (UTF-8), what the baseline cache key holds."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def read_corpus(path: Path) -> str:
    """The text of a corpus file, with one trailing newline dropped as llama-perplexity's `-f` does.

    Raises:
        DataError: missing, unreadable or not UTF-8.
    """
    try:
        text = read_named_file(path, "text file", DataError).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from None
    return text.removesuffix("\n")


def _files(paths: Sequence[Path]) -> list[Path]:
    """The files named: each file as given, each folder as its visible files in name order."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{path}: no text files in this folder")
        files += found
    return files


def load_texts(paths: Sequence[Path]) -> tuple[CorpusText, ...]:
    """Read the texts of `--text` (files and folders), one category per file.

    A category is named by its file name; files of the same name in different folders are named
    by their path as given instead.

    Raises:
        UsageError: no path, or one file given twice.
        DataError: a file missing, unreadable, not UTF-8 or empty; a folder without files.
    """
    if not paths:
        raise UsageError("give at least one --text FILE or folder")
    files = _files(paths)
    seen: dict[Path, Path] = {}
    for file in files:
        resolved = file.resolve()
        if resolved in seen:
            raise UsageError(f"{file}: the same text is given twice (also as {seen[resolved]})")
        seen[resolved] = file
    names = [file.name for file in files]
    texts = []
    for file, name in zip(files, names):
        text = read_corpus(file)
        if not text:
            raise DataError(f"{file}: empty text file; every text must hold at least one chunk")
        texts.append(CorpusText(name if names.count(name) == 1 else str(file), str(file), text))
    return tuple(texts)


def chunk_tokens(
    tokens: list[int], bos: list[int], ctx: int, chunks: int | None, source: str
) -> NDArray[np.int32]:
    """Cut one text's tokens into (n_chunks, ctx) non-overlapping chunks, each starting with BOS
    when the model uses one.

    Args:
        tokens: the text tokenized with BOS.
        bos: the model's BOS token alone (empty when it has none).
        ctx: tokens per chunk.
        chunks: at most this many chunks (None: every full chunk).
        source: the text's name in the error.

    Raises:
        DataError: the text is shorter than one chunk.
    """
    available = len(tokens) // ctx
    if available < 1:
        raise DataError(
            f"{source}: {len(tokens)} tokens, fewer than one chunk of --ctx {ctx}; use a longer "
            "text or a smaller --ctx"
        )
    n_chunks = min(chunks, available) if chunks else available
    out = np.asarray(tokens[: n_chunks * ctx], dtype=np.int32).reshape(n_chunks, ctx).copy()
    if bos:
        out[:, 0] = bos[0]
    return out
