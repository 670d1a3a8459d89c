"""The on-disk baseline cache: a baseline's scores, computed once, reused by every quant and run.

An entry is keyed by everything that determines the baseline's numbers: the model file's
identity (size, mtime, first and last MiB), its vocabulary, the prompt version, the
questions (content digest, in order), K and the tail draws, the llama settings and build of
`ggflip.backends.numerics.baseline_numerics`, and how prompts are batched (`choice.resume`).
It is two files: `<key>.npz` (the arrays of `BaselineScores`) and `<key>.json` (format version,
the key's parts, the questions skipped for a prompt longer than n_ctx, the npz's sha256, and a
sha256 of the JSON document itself). Both are written to a temporary name and renamed, the JSON
last, so an entry is either complete or absent. A skipped question owns no scored positions in
the arrays. An entry whose format, checksums, shapes or contents do not match is reported in one
line, deleted and recomputed, never used.

Size per scored position (one per letter question; every continuation token of every choice in
cloze mode): the argmax, and every mode's record (`ggflip.scoring.record.PositionRecord`): K
int32 ids + K float32 logits, the row's float64 log-sum-exp (log p = logit - lse, exactly the
kernel's float64 log-prob) and tail mass, and S tail draws (int32 id + float32 logit):
8K + 8S + 20 bytes, 4.3 KiB at K=512, S=32 and 1.5 KiB at cloze's default K=64, S=128,
against ~512 KiB for a full 262,144-token row in llama.cpp's 16-bit KL base file (120x).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggflip.choice.baseline import BaselineScores
from ggflip.store.atomic import atomic_write_bytes
from ggflip.store.keys import CACHE_FORMAT

log = logging.getLogger("ggflip.choice.cache")


@dataclass(frozen=True)
class BaselineCache:
    """Baseline entries under `<root>/baselines/`."""

    root: Path

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / "baselines"
        return folder / f"{key}.npz", folder / f"{key}.json"

    def contains(self, key: str) -> bool:
        """Whether an entry for `key` is present (not checked; `load` checks)."""
        data_path, meta_path = self._paths(key)
        return data_path.exists() and meta_path.exists()

    def load(
        self, key: str, n_questions: int, k: int, n_samples: int
    ) -> tuple[BaselineScores, dict[int, str]] | None:
        """The cached scores for `key` and its skipped questions, or None when absent or unusable.

        A damaged entry (truncated, edited, of another format or shape) is logged in one line and
        deleted, so the baseline is scored again and the entry rebuilt.
        """
        data_path, meta_path = self._paths(key)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
                raise ValueError(
                    f"format {meta.get('format') if isinstance(meta, dict) else '?'}, expected "
                    f"{CACHE_FORMAT}"
                )
            if meta.get("meta_sha256") != _meta_digest(meta):
                raise ValueError("checksum of the .json does not match")
            blob = data_path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                raise ValueError("checksum of the .npz does not match")
            with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
                scores = BaselineScores.of(arrays)
            skips = {int(index): str(reason) for index, reason in meta.get("skipped", {}).items()}
            _check_shapes(scores, n_questions, k, n_samples, skips)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
            log.warning(
                "baseline cache %s is damaged (%s); deleting it and scoring the baseline again",
                data_path,
                exc,
            )
            data_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None
        return scores, skips

    def save(
        self,
        key: str,
        scores: BaselineScores,
        meta: Mapping[str, Any],
        skipped: Mapping[int, str] | None = None,
    ) -> Path:
        """Store an entry atomically; returns the data file's path.

        Raises:
            DiskFullError, CacheError: the entry cannot be written (an older entry stays intact).
        """
        data_path, meta_path = self._paths(key)
        buffer = io.BytesIO()
        arrays: dict[str, Any] = scores.named()
        np.savez(buffer, **arrays)
        blob = buffer.getvalue()
        atomic_write_bytes(data_path, blob)
        document = {
            "format": CACHE_FORMAT,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "skipped": {str(index): reason for index, reason in sorted((skipped or {}).items())},
            **meta,
        }
        document["meta_sha256"] = _meta_digest(document)
        atomic_write_bytes(meta_path, json.dumps(document, indent=1, sort_keys=True).encode())
        return data_path


def _meta_digest(document: Mapping[str, Any]) -> str:
    """sha256 of a cache entry's JSON document, without its own checksum field."""
    body = {name: value for name, value in document.items() if name != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_shapes(
    scores: BaselineScores, n_questions: int, k: int, n_samples: int, skips: Mapping[int, str]
) -> None:
    """Raise ValueError unless the arrays fit `n_questions` x `k` (and `n_samples` tail draws) and
    the skipped questions are exactly those with no scored positions."""
    if not scores.fits(n_questions, k, n_samples):
        raise ValueError(
            f"arrays do not fit {n_questions} questions at top-K {k} with {n_samples} tail draws"
        )
    counts = np.diff(scores.row_offsets)
    if (counts < 0).any() or set(np.flatnonzero(counts == 0).tolist()) != set(skips):
        raise ValueError("skipped questions do not match the arrays")
