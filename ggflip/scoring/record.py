"""The baseline's per-position record, one class for every mode's baseline.

Multiple choice (per scored position of a question), corpus (per scored token of a chunk) and
generation (per generated token of a turn) keep the same record of the baseline's distribution at
a position: `ggflip.scoring.topk.BaselineRows`' top K ids and log-probs, log P(tail) and S tail
draws. `PositionRecord` is that record with what storing it needs: allocation, row slicing and
writing, the shape check a cache entry passes before use, and its bytes per position. Each mode's
baseline composes one with its own arrays (option scores, tokens, target log-probs), and the
arrays keep their names on disk, so every mode's cache files name them alike.

Size: a log-prob is stored as the token's float32 logit with the row's float64 log-sum-exp
(log p = logit - lse, exactly the kernel's float64 value), so a position takes 8·K + 8·S + 16
bytes: 4,368 at K = 512, S = 32, against 12·K + 12·S + 8 for float64 log-probs
(`benchmarks/cache_kl_error.py --formats` measures the candidates).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.topk import BaselineRows

# Each array's dtype; shapes (R, K), (R, K), (R,), (R,), (R, S), (R, S) for R positions.
DTYPES: dict[str, type[np.generic]] = {
    "top_ids": np.int32,
    "top_logits": np.float32,
    "lse": np.float64,
    "tail_logmass": np.float64,
    "sample_ids": np.int32,
    "sample_logits": np.float32,
}
_WIDTHS = {"top_ids": "k", "top_logits": "k", "sample_ids": "s", "sample_logits": "s"}
NAMES = tuple(BaselineRows.__dataclass_fields__)


@dataclass(frozen=True)
class PositionRecord(BaselineRows):
    """R positions of the baseline's record (a `BaselineRows`, so `kl_rows` takes it).

    Attributes:
        top_ids: (R, K) int32 most probable tokens, most probable first.
        top_logits: (R, K) float32 their logits (log-probability + lse; `top_logprobs` gives the
            float64 log-probabilities).
        lse: (R,) float64 each row's log-sum-exp of its logits.
        tail_logmass: (R,) float64 log of the probability outside the top K (-inf: none).
        sample_ids: (R, S) int32 tokens drawn from the baseline restricted to its tail.
        sample_logits: (R, S) float32 their logits (`sample_logprobs`: log-probabilities).
    """

    NAMES: ClassVar[tuple[str, ...]] = NAMES

    @staticmethod
    def shapes(n_rows: int, k: int, n_samples: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Each array's (shape, dtype) for `n_rows` positions at top-`k` and `n_samples` draws."""
        widths = {"k": (k,), "s": (n_samples,)}
        return {
            name: ((n_rows, *widths.get(_WIDTHS.get(name, ""), ())), dtype)
            for name, dtype in DTYPES.items()
        }

    @classmethod
    def allocate(cls, n_rows: int, k: int, n_samples: int) -> PositionRecord:
        """Zeroed room for `n_rows` positions."""
        return cls(
            **{
                name: np.zeros(shape, dtype)
                for name, (shape, dtype) in cls.shapes(n_rows, k, n_samples).items()
            }
        )

    @classmethod
    def of(cls, arrays: Mapping[str, NDArray[Any]] | BaselineRows) -> PositionRecord:
        """The record of a mapping holding its arrays by name (an `.npz`, memory maps), or of a
        kernel's `BaselineRows`."""
        if isinstance(arrays, BaselineRows):
            return cls(*(getattr(arrays, name) for name in NAMES))
        return cls(**{name: arrays[name] for name in NAMES})

    @classmethod
    def concatenate(cls, parts: Sequence[BaselineRows]) -> PositionRecord:
        """The positions of `parts`, one after the other."""
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) for name in NAMES))

    @staticmethod
    def bytes_per_row(k: int, n_samples: int) -> int:
        """Bytes one position takes: K ids and logits, the log-sum-exp and tail mass, S draws
        and their logits."""
        return sum(
            int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
            for shape, dtype in PositionRecord.shapes(1, k, n_samples).values()
        )

    def arrays(self) -> Iterator[NDArray[Any]]:
        """The arrays in field order."""
        return (getattr(self, name) for name in NAMES)

    def named(self) -> dict[str, NDArray[Any]]:
        """The arrays by name, as they are stored."""
        return {name: getattr(self, name) for name in NAMES}

    @property
    def n_rows(self) -> int:
        """Positions held."""
        return int(self.top_ids.shape[0])

    @property
    def k(self) -> int:
        """Top-K width."""
        return int(self.top_ids.shape[1])

    @property
    def n_samples(self) -> int:
        """Tail draws per position."""
        return int(self.sample_ids.shape[1])

    def __getitem__(self, span: slice) -> PositionRecord:
        """The positions of `span` (views, so memory-mapped arrays stay on disk until read)."""
        return PositionRecord(*(array[span] for array in self.arrays()))

    def put(self, start: int, rows: BaselineRows) -> int:
        """Write `rows` at positions `start:`; returns the position after them."""
        stop = start + int(rows.top_ids.shape[0])
        for name in NAMES:
            getattr(self, name)[start:stop] = getattr(rows, name)
        return stop

    def fits(self, n_rows: int, k: int, n_samples: int) -> bool:
        """Whether every array has the shape and dtype `n_rows` positions at top-`k` and
        `n_samples` draws need."""
        expected = self.shapes(n_rows, k, n_samples)
        return all(
            getattr(self, name).shape == shape and getattr(self, name).dtype == dtype
            for name, (shape, dtype) in expected.items()
        )
