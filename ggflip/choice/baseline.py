"""The baseline's record of a multiple-choice run: its answers, and its distributions compactly.

`BaselineScores` holds per question the baseline's option scores and, per scored position (letter:
one per question; cloze: one per continuation token of every choice), its full-vocabulary argmax
and every mode's baseline record (`ggflip.scoring.record.PositionRecord`: top-K log-probs, tail
mass and tail draws). A quant's rows are compared with it through the same kernel as corpus mode
while still in memory, so the full-vocabulary KL never needs both full rows at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ggflip.choice.answers import TAIL_SAMPLING_SEED, ChoiceScore
from ggflip.scoring.acceptance import acceptance_rows
from ggflip.scoring.record import PositionRecord
from ggflip.scoring.topk import BaselineRows, Normalized, baseline_normalize, kl_rows, normalize


@dataclass
class BaselineScores:
    """The baseline's compact record: per question its option scores, per scored position the
    shared baseline record (`ggflip.scoring.record.PositionRecord`) and the full-vocabulary argmax.

    A question owns the scored positions `row_offsets[i]:row_offsets[i + 1]` (letter: one;
    cloze: every continuation token of every choice). N questions, R positions.

    Attributes:
        option_logprobs: (N, max_options) float64 answer-rule scores, -inf beyond a question's
            options.
        option_sums, option_norms: (N, max_options) cloze summed / per-character log-likelihoods
            (-inf in letter mode).
        row_offsets: (N + 1,) int64 start of each question's positions.
        top_token: (R,) int32 full-vocabulary argmax.
        positions: the R positions' record (top K, tail mass, tail draws).
    """

    option_logprobs: NDArray[np.float64]
    option_sums: NDArray[np.float64]
    option_norms: NDArray[np.float64]
    row_offsets: NDArray[np.int64]
    top_token: NDArray[np.int32]
    positions: PositionRecord

    # The arrays by name, in the order a cache entry stores them.
    ARRAYS = (
        "option_logprobs",
        "option_sums",
        "option_norms",
        "row_offsets",
        "top_token",
        *PositionRecord.NAMES,
    )

    @classmethod
    def empty(
        cls,
        n_questions: int,
        max_options: int,
        k: int,
        rows_per_question: Sequence[int] | None = None,
        n_samples: int = 0,
    ) -> BaselineScores:
        """Room for N questions, each with its number of scored positions (default one)."""
        counts = (
            np.ones(n_questions, dtype=np.int64)
            if rows_per_question is None
            else np.asarray(rows_per_question, dtype=np.int64)
        )
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n_rows = int(offsets[-1])
        return cls(
            option_logprobs=np.full((n_questions, max_options), -np.inf),
            option_sums=np.full((n_questions, max_options), -np.inf),
            option_norms=np.full((n_questions, max_options), -np.inf),
            row_offsets=offsets,
            top_token=np.zeros(n_rows, dtype=np.int32),
            positions=PositionRecord.allocate(n_rows, k, n_samples),
        )

    @classmethod
    def of(cls, arrays: Mapping[str, NDArray[Any]]) -> BaselineScores:
        """The scores from their arrays by name (`ARRAYS`, as `named` gives them)."""
        own = {name: arrays[name] for name in cls.ARRAYS[:5]}
        return cls(**own, positions=PositionRecord.of(arrays))

    def named(self) -> dict[str, NDArray[Any]]:
        """Every array by name, in `ARRAYS` order."""
        own = {name: getattr(self, name) for name in self.ARRAYS[:5]}
        return {**own, **self.positions.named()}

    @property
    def n_samples(self) -> int:
        """Tail draws per scored position."""
        return self.positions.n_samples

    def fits(self, n_questions: int, k: int, n_samples: int) -> bool:
        """Whether these arrays have the shapes a run of N questions at top-K and S draws needs."""
        n_rows = int(self.row_offsets[-1]) if self.row_offsets.shape == (n_questions + 1,) else -1
        return (
            self.option_logprobs.shape[0] == n_questions
            and self.option_sums.shape == self.option_logprobs.shape == self.option_norms.shape
            and self.top_token.shape == (n_rows,)
            and self.positions.fits(n_rows, k, n_samples)
        )

    def span(self, index: int) -> slice:
        """Question `index`'s scored positions."""
        return slice(int(self.row_offsets[index]), int(self.row_offsets[index + 1]))

    def n_rows(self, index: int) -> int:
        """How many scored positions question `index` has."""
        return int(self.row_offsets[index + 1] - self.row_offsets[index])

    def rows(self, index: int) -> PositionRecord:
        """Question `index`'s per-position record, as the KL kernel takes it."""
        return self.positions[self.span(index)]

    def normalize(
        self, index: int, logits: Sequence[NDArray[np.float32]]
    ) -> tuple[list[Normalized], list[BaselineRows]]:
        """Question `index`'s baseline rows (one array per request, in position order) normalized,
        and their compact records, in one pass per row; stored by `record`.

        Reads no state but the record's shape, so it may run on a scoring thread.
        """
        rng = np.random.default_rng([index, TAIL_SAMPLING_SEED])
        k, n_samples = self.positions.k, self.positions.n_samples
        done = [baseline_normalize(rows, k, n_samples, rng) for rows in logits]
        return [norm for norm, _ in done], [record for _, record in done]

    def record(
        self,
        index: int,
        score: ChoiceScore,
        blocks: Sequence[Normalized],
        records: Sequence[BaselineRows],
    ) -> None:
        """Store question `index`'s answer and the compact record of its scored distributions.

        Args:
            blocks: the question's normalized rows, in position order (one block per request).
            records: their records (`normalize`).
        """
        n_given = sum(len(b.logits) for b in blocks)
        if n_given != self.n_rows(index):
            raise ValueError(
                f"question {index}: {n_given} scored rows, expected {self.n_rows(index)}"
            )
        n_options = len(score.option_logprobs)
        self.option_logprobs[index, :n_options] = score.option_logprobs
        if score.sums is not None and score.norms is not None:
            self.option_sums[index, :n_options] = score.sums
            self.option_norms[index, :n_options] = score.norms
        row = int(self.row_offsets[index])
        for block, rows in zip(blocks, records):
            stop = self.positions.put(row, rows)
            self.top_token[row:stop] = block.argmax()
            row = stop

    def choice_score(self, index: int, n_options: int) -> ChoiceScore:
        """Question `index`'s answer as recorded."""
        sums = self.option_sums[index, :n_options].copy()
        norms = self.option_norms[index, :n_options].copy()
        cloze = bool(np.isfinite(sums).any())
        return ChoiceScore(
            self.option_logprobs[index, :n_options].copy(),
            self.top_token[self.span(index)].astype(np.int64),
            sums if cloze else None,
            norms if cloze else None,
        )

    def quant_normalize(
        self, index: int, logits: Sequence[NDArray[np.float32]]
    ) -> list[Normalized]:
        """A quant's rows of question `index` normalized against the baseline's top ids (their
        tail mass from the same pass), as `kl_to` and `acceptance_to` take them."""
        row, blocks = int(self.row_offsets[index]), []
        for rows in logits:
            stop = row + len(rows)
            blocks.append(normalize(rows, self.positions.top_ids[row:stop]))
            row = stop
        return blocks

    def kl_to(self, index: int, blocks: Sequence[Normalized]) -> tuple[float, float]:
        """KL(baseline || quant) of question `index`, averaged over its positions.

        Returns:
            (estimate, lower bound): the lower bound is the top-K + merged-tail KL, the estimate
            adds the sampled tail gap (`ggflip.scoring.topk.kl_rows`).
        """
        n_quant = sum(len(b.logits) for b in blocks)
        if n_quant != self.n_rows(index):
            raise ValueError(
                f"question {index}: quant scored {n_quant} rows, baseline {self.n_rows(index)}"
            )
        base, row = self.rows(index), 0
        lower = gap = 0.0
        for block in blocks:
            stop = row + len(block.logits)
            coarse, tail_gap = kl_rows(base[row:stop], block)
            lower, gap, row = lower + float(coarse.sum()), gap + float(tail_gap.sum()), stop
        n = max(self.n_rows(index), 1)
        return (lower + gap) / n, lower / n

    def acceptance_to(self, index: int, blocks: Sequence[Normalized]) -> float:
        """Expected acceptance Σ min(p, q) of question `index`, averaged over its positions.

        Exact over the top K, the tail's share estimated from the tail draws
        (`ggflip.scoring.acceptance.acceptance_rows`).
        """
        row, total = int(self.row_offsets[index]), 0.0
        for block in blocks:
            stop = row + len(block.logits)
            part = self.positions[row:stop]
            total += float(acceptance_rows(part, block).sum())
            row = stop
        if row != self.row_offsets[index + 1]:
            raise ValueError(
                f"question {index}: quant scored {row - self.row_offsets[index]} rows, baseline "
                f"{self.n_rows(index)}"
            )
        return total / max(self.n_rows(index), 1)
