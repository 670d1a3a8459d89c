"""The baseline's record of each generated turn, how it is stored, and the baseline cache.

A `BaseUnit` is one turn of one question as the baseline produced it: its prompt tokens (the
rendering every model reads), its greedy generation (ids, text, finish, logit margins) and,
per generated token, every mode's record of the baseline's teacher-forced distribution
(`ggflip.scoring.record.PositionRecord`) plus the log-prob of the token itself.
A quant never loads the baseline: it reads these records.

A unit is stored as one `.npz` payload (raw arrays plus a JSON header), in the run store while
the baseline generates and as one file `<cache>/generate/<key>.npz` (written atomically, a
sha256 of the payload checked when read) once every unit is done.
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
from numpy.typing import NDArray

from ggflip.scoring.record import PositionRecord
from ggflip.store.atomic import atomic_write_bytes

log = logging.getLogger("ggflip.generate.records")
GEN_CACHE_FORMAT = 4  # in the run key too: a baseline whose prompts read otherwise is not reused


@dataclass(frozen=True)
class BaseUnit:
    """The baseline's prompt, generation and per-token record of one turn of one question."""

    prompt: tuple[int, ...]
    shared_prefix: int
    tokens: tuple[int, ...]
    text: str
    finish: str
    margins: tuple[float, ...]
    rows: PositionRecord
    target_logprob: NDArray[np.float64]  # (len(tokens),): log p of each generated token


def encode_unit(unit: BaseUnit) -> bytes:
    """One unit as an `.npz` payload."""
    header = {
        "prompt": list(unit.prompt),
        "shared_prefix": unit.shared_prefix,
        "tokens": list(unit.tokens),
        "text": unit.text,
        "finish": unit.finish,
        "margins": list(unit.margins),
    }
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {name: np.asarray(rows) for name, rows in unit.rows.named().items()}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    arrays["target_logprob"] = np.asarray(unit.target_logprob, dtype=np.float64)
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_unit(payload: bytes) -> BaseUnit:
    """Inverse of `encode_unit`; ValueError when the payload does not fit."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes())
            rows = PositionRecord.of(archive)
            target = archive["target_logprob"]
    except (OSError, KeyError, json.JSONDecodeError, EOFError) as exc:
        raise ValueError(f"not a generation record: {exc}") from None
    tokens = tuple(int(t) for t in header["tokens"])
    if rows.n_rows != len(tokens) or target.shape != (len(tokens),):
        raise ValueError("record rows do not match its generated tokens")
    return BaseUnit(
        prompt=tuple(int(t) for t in header["prompt"]),
        shared_prefix=int(header["shared_prefix"]),
        tokens=tokens,
        text=str(header["text"]),
        finish=str(header["finish"]),
        margins=tuple(float(m) for m in header["margins"]),
        rows=rows,
        target_logprob=target,
    )


class GenerationCache:
    """Finished baselines, one file per key under `<cache>/generate/`."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "generate"

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def contains(self, key: str) -> bool:
        return self._path(key).exists()

    def save(self, key: str, units: Mapping[int, BaseUnit], skips: Mapping[int, str]) -> None:
        """Store every unit (by unit index) and the skipped ones' reasons, atomically."""
        payloads: dict[str, Any] = {
            str(i): np.frombuffer(encode_unit(u), np.uint8) for i, u in units.items()
        }
        index = {"format": GEN_CACHE_FORMAT, "skips": {str(i): r for i, r in skips.items()}}
        buffer = io.BytesIO()
        np.savez(buffer, index=np.frombuffer(json.dumps(index).encode(), np.uint8), **payloads)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest().encode()
        atomic_write_bytes(self._path(key), digest + b"\n" + data)

    def load(self, key: str) -> tuple[dict[int, BaseUnit], dict[int, str]] | None:
        """The cached units and skips of `key`; None when absent or damaged (logged)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            blob = path.read_bytes()
            digest, _, data = blob.partition(b"\n")
            if hashlib.sha256(data).hexdigest().encode() != digest:
                raise ValueError("checksum mismatch")
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                index = json.loads(archive["index"].tobytes())
                if index.get("format") != GEN_CACHE_FORMAT:
                    raise ValueError("format mismatch")
                units = {
                    int(name): decode_unit(archive[name].tobytes())
                    for name in archive.files
                    if name != "index"
                }
        except (OSError, ValueError, KeyError) as exc:
            log.warning("generation baseline %s is damaged (%s); generating it again", path, exc)
            return None
        return units, {int(i): str(r) for i, r in index["skips"].items()}
