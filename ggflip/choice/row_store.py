"""Multiple-choice records in the row store (scored rows kept for resume), so a stopped run resumes.

The database (`ggflip.store.rowdb`) holds one row per (run, model, question): the run key is
the baseline cache key (baseline file, vocabulary, prompt, questions, K, tail draws, the llama
settings and build of `baseline_numerics`, batching), the model key digests a model's label,
file identity and the llama settings that can change its numbers. A row holds a baseline's
compact record (`base`), a quant's comparison row (`row`) or why the question was skipped
(`skip`). A row whose content does not decode is reported, dropped and scored again.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ggflip.choice.answers import QuestionRow
from ggflip.choice.baseline import BaselineScores
from ggflip.scoring.record import PositionRecord
from ggflip.store.rowdb import (
    BASE,
    ROW,
    SKIP,
    STORE_FORMAT,
    STORE_NAME,
    Item,
    RowStore,
    StoreSession,
)

__all__ = ["STORE_FORMAT", "STORE_NAME", "StoredQuestions", "RowStore", "StoreSession"]

log = logging.getLogger("ggflip.choice.row_store")


def encode_row(row: QuestionRow) -> bytes:
    """A quant's comparison row as JSON (floats round-trip exactly)."""
    return json.dumps(asdict(row), allow_nan=True).encode()


def decode_row(payload: bytes) -> QuestionRow:
    """Inverse of `encode_row`; ValueError/TypeError/KeyError when the payload does not fit."""
    fields = json.loads(payload)
    for name in (
        "base_probs",
        "quant_probs",
        "base_sums",
        "base_norms",
        "quant_sums",
        "quant_norms",
    ):
        if name in fields:
            fields[name] = tuple(float(p) for p in fields[name])
    return QuestionRow(**fields)


_BASE_HEADER = struct.Struct("<IIII")  # n_options, k, n_rows, n_samples


@dataclass(frozen=True)
class BaseRecord:
    """One question's baseline record as stored: option scores, and its scored positions' argmax
    and record (top-K, tail mass and tail draws)."""

    option_logprobs: np.ndarray
    option_sums: np.ndarray
    option_norms: np.ndarray
    top_token: np.ndarray
    positions: PositionRecord

    @property
    def n_rows(self) -> int:
        return len(self.top_token)

    def write_into(self, scores: BaselineScores, index: int) -> None:
        """Put this record back at question `index`; ValueError when its shape does not fit
        there."""
        n_options = len(self.option_logprobs)
        if (
            n_options > scores.option_logprobs.shape[1]
            or self.positions.k != scores.positions.k
            or self.positions.n_samples != scores.positions.n_samples
        ):
            raise ValueError("record of another shape")
        if self.n_rows != scores.n_rows(index):
            raise ValueError(
                f"record of {self.n_rows} scored positions, the prompts have {scores.n_rows(index)}"
            )
        span = scores.span(index)
        scores.option_logprobs[index, :n_options] = self.option_logprobs
        scores.option_sums[index, :n_options] = self.option_sums
        scores.option_norms[index, :n_options] = self.option_norms
        scores.top_token[span] = self.top_token
        scores.positions.put(span.start, self.positions)


def _layout(n_options: int, k: int, n_rows: int, n_samples: int) -> list[tuple[str, str, int]]:
    """(field, little-endian dtype, count) of each array of a stored baseline record, in order."""
    record = [
        (name, np.dtype(dtype).newbyteorder("<").str, int(np.prod(shape)))
        for name, (shape, dtype) in PositionRecord.shapes(n_rows, k, n_samples).items()
    ]
    return [
        ("option_logprobs", "<f8", n_options),
        ("option_sums", "<f8", n_options),
        ("option_norms", "<f8", n_options),
        ("top_token", "<i4", n_rows),
        *record,
    ]


def encode_baseline(scores: BaselineScores, index: int, n_options: int) -> bytes:
    """The baseline's compact record of one question (all its scored positions), as raw
    little-endian arrays."""
    k, n_samples = scores.positions.k, scores.n_samples
    span, arrays = scores.span(index), scores.named()
    parts = [_BASE_HEADER.pack(n_options, k, span.stop - span.start, n_samples)]
    for name, dtype, _ in _layout(n_options, k, span.stop - span.start, n_samples):
        array = arrays[name]
        values = array[index, :n_options] if name.startswith("option_") else array[span]
        parts.append(values.astype(dtype).tobytes())
    return b"".join(parts)


def decode_baseline(payload: bytes, k: int, n_samples: int) -> BaseRecord:
    """Inverse of `encode_baseline`; ValueError when the record is not of top-K `k` with
    `n_samples` tail draws, or of the wrong length."""
    n_options, record_k, n_rows, record_samples = _BASE_HEADER.unpack_from(payload)
    if record_k != k or record_samples != n_samples:
        raise ValueError("record of another shape")
    layout = _layout(n_options, k, n_rows, n_samples)
    size = sum(count * np.dtype(dtype).itemsize for _, dtype, count in layout)
    if len(payload) != _BASE_HEADER.size + size:
        raise ValueError("record of another length")
    offset, arrays = _BASE_HEADER.size, {}
    for name, dtype, count in layout:
        arrays[name] = np.frombuffer(payload, dtype, count, offset)
        offset += count * np.dtype(dtype).itemsize
    for name, (shape, _) in PositionRecord.shapes(n_rows, k, n_samples).items():
        arrays[name] = arrays[name].reshape(shape)
    return BaseRecord(
        option_logprobs=arrays["option_logprobs"],
        option_sums=arrays["option_sums"],
        option_norms=arrays["option_norms"],
        top_token=arrays["top_token"],
        positions=PositionRecord.of(arrays),
    )


class StoredQuestions:
    """One model's stored questions in one run, restored once and recorded batch by batch.

    Without a store session every call is a no-op, so the engine scores the same way with or
    without resuming.
    """

    def __init__(self, session: StoreSession | None, run: str, model: str, label: str) -> None:
        self.session, self.run, self.model, self.label = session, run, model, label

    def _restored(self) -> dict[int, Item]:
        return self.session.restore(self.run, self.model, self.label) if self.session else {}

    def _drop(self, index: int, exc: Exception) -> None:
        log.warning(
            "run store: row %d of %s does not decode (%s); scoring it again", index, self.label, exc
        )
        if self.session:
            self.session.forget(self.run, self.model, [index])

    def restore_quant(self) -> dict[int, QuestionRow | str]:
        """Stored comparison rows (or skip reasons, as str) by question index."""
        restored: dict[int, QuestionRow | str] = {}
        for index, (kind, payload) in self._restored().items():
            try:
                restored[index] = payload.decode() if kind == SKIP else decode_row(payload)
                if kind not in (SKIP, ROW) or (kind == ROW and restored[index].index != index):  # type: ignore[union-attr]
                    raise ValueError(f"unexpected {kind} row")
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                restored.pop(index, None)
                self._drop(index, exc)
        return restored

    def restore_baseline(
        self, n_questions: int, k: int, n_samples: int
    ) -> dict[int, BaseRecord | str]:
        """Stored baseline records (or skip reasons, as str) by question index."""
        restored: dict[int, BaseRecord | str] = {}
        for index, (kind, payload) in self._restored().items():
            try:
                if not 0 <= index < n_questions:
                    raise ValueError("index out of range")
                if kind == SKIP:
                    restored[index] = payload.decode()
                elif kind == BASE:
                    restored[index] = decode_baseline(payload, k, n_samples)
                else:
                    raise ValueError(f"unexpected {kind} row")
            except (ValueError, TypeError, UnicodeDecodeError, struct.error) as exc:
                self._drop(index, exc)
        return restored

    def record_quant(self, items: Mapping[int, QuestionRow | str]) -> None:
        """Store one batch of a quant's rows (str: the question was skipped, for this reason)."""
        if self.session:
            self.session.record(
                self.run,
                self.model,
                self.label,
                {
                    index: (SKIP, item.encode())
                    if isinstance(item, str)
                    else (ROW, encode_row(item))
                    for index, item in items.items()
                },
            )

    def record_baseline(
        self, scores: BaselineScores, items: Mapping[int, tuple[int, str | None]]
    ) -> None:
        """Store one batch of baseline records: index -> (number of options, skip reason or
        None)."""
        if self.session:
            self.session.record(
                self.run,
                self.model,
                self.label,
                {
                    index: (SKIP, reason.encode())
                    if reason is not None
                    else (BASE, encode_baseline(scores, index, n_options))
                    for index, (n_options, reason) in items.items()
                },
            )

    def drop(self, indexes: Iterable[int]) -> None:
        """Drop some stored questions of this model (records that no longer fit the prompts)."""
        if self.session:
            self.session.forget(self.run, self.model, list(indexes))

    def forget(self) -> None:
        """Drop this model's stored questions (the baseline, once it is in the baseline cache)."""
        if self.session:
            self.session.forget(self.run, self.model)
