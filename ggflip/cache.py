"""The on-disk baseline cache: a baseline's scores, computed once, reused by every quant and run.

An entry is keyed by everything that determines the baseline's numbers: the model file's
identity (size, mtime, first and last MiB), its vocabulary, the prompt version, the
questions (content digest, in order) and K. It is two files: `<key>.npz` (the arrays of
`BaselineScores`) and `<key>.json` (format version, the key's parts, the npz's sha256).
Both are written to a temporary name and renamed, the JSON last, so an entry is either
complete or absent. An entry whose checksum or shape does not match is reported and ignored.

Size: K int32 ids + K float32 log-probs per scored position (one per letter question; every
continuation token of every choice in cloze mode), 4 KiB at K=512 and 512 B at cloze's
default K=64, against ~512 KiB for a full 262,144-token row in llama.cpp's 16-bit KL base file.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ggflip.errors import CacheError, DiskFullError
from ggflip.scoring import BaselineScores

CACHE_FORMAT = 1
log = logging.getLogger("ggflip.cache")


def cache_key(parts: Mapping[str, Any]) -> str:
    """A stable digest of the key's parts (any JSON-serializable mapping)."""
    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename; never leaves a partial file.

    Raises:
        DiskFullError: the disk filled up; the previous content of `path` is untouched.
        CacheError: any other write failure.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"{path.parent}: disk full while writing {path.name}; free space and re-run (finished work is kept)") from None
        raise CacheError(f"{path}: cannot write cache file: {exc.strerror}") from None


@dataclass(frozen=True)
class BaselineCache:
    """Baseline entries under `<root>/baselines/`."""

    root: Path

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / "baselines"
        return folder / f"{key}.npz", folder / f"{key}.json"

    def load(self, key: str, n_questions: int, k: int) -> BaselineScores | None:
        """The cached scores for `key`, or None when absent or unusable (a damaged entry is logged)."""
        data_path, meta_path = self._paths(key)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            blob = data_path.read_bytes()
            if meta.get("format") != CACHE_FORMAT or hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                raise ValueError("checksum or format mismatch")
            with np.load(io.BytesIO(blob)) as arrays:
                scores = BaselineScores(**{name: arrays[name] for name in arrays.files})
            if not scores.fits(n_questions, k):
                raise ValueError("shape mismatch")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("baseline cache %s is damaged (%s); recomputing it", data_path, exc)
            return None
        return scores

    def save(self, key: str, scores: BaselineScores, meta: Mapping[str, Any]) -> Path:
        """Store an entry atomically; returns the data file's path."""
        data_path, meta_path = self._paths(key)
        buffer = io.BytesIO()
        np.savez(buffer, **{name: getattr(scores, name) for name in BaselineScores.__dataclass_fields__})
        blob = buffer.getvalue()
        atomic_write_bytes(data_path, blob)
        document = {"format": CACHE_FORMAT, "sha256": hashlib.sha256(blob).hexdigest(), **meta}
        atomic_write_bytes(meta_path, json.dumps(document, indent=1, sort_keys=True).encode())
        return data_path
