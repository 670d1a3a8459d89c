"""From one model's next-token distributions to an answer, and from two answers to a comparison row.

Letter mode reads one distribution per question; cloze mode one per continuation token of
every choice. The baseline's distributions are kept compactly (`BaselineScores`: option
scores, argmax and, per scored position, the record of `ggflip.scoring.topk`: top-K log-probs,
tail mass and tail draws); a quant's are compared with them through the same kernel as corpus
mode while still in memory, so the full-vocabulary KL never needs both full rows at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring import kernels, metrics
from ggflip.scoring.acceptance import acceptance_rows
from ggflip.scoring.topk import BaselineRows, Normalized, baseline_normalize, kl_rows, normalize
from ggflip.tasks.questions import Question

FLIP_LOST = "correct_to_incorrect"
FLIP_GAINED = "incorrect_to_correct"


@dataclass(frozen=True)
class ChoiceScore:
    """One model's answer to one question.

    Attributes:
        option_logprobs: (n_options,) the answer rule's score per option (letter: the letter's
            log-prob; cloze: the continuation's summed or per-character log-likelihood).
        top_tokens: (n_scored_positions,) full-vocabulary argmax at each scored position.
        sums, norms: cloze only, (n_options,) summed and per-character log-likelihoods.
    """

    option_logprobs: NDArray[np.float64]
    top_tokens: NDArray[np.int64]
    sums: NDArray[np.float64] | None = None
    norms: NDArray[np.float64] | None = None

    @property
    def choice(self) -> int:
        return int(np.argmax(self.option_logprobs))

    @property
    def top_token(self) -> int:
        """The argmax at the first scored position (the answer position in letter mode)."""
        return int(self.top_tokens[0])

    @property
    def option_probs(self) -> NDArray[np.float64]:
        return kernels.option_distribution(self.option_logprobs)


def score_letters(rows: Normalized, variants: Sequence[Sequence[int]]) -> ChoiceScore:
    """Option log-probs (logsumexp over each letter's token variants) and the full-vocab argmax.

    Args:
        rows: the one normalized row of the answer position.
        variants: per option, the token ids that spell its letter.
    """
    option_logprobs = np.array(
        [kernels.logsumexp(rows.logprobs_at(np.array([ids]))[0]) for ids in variants]
    )
    return ChoiceScore(option_logprobs=option_logprobs, top_tokens=rows.argmax()[:1])


def score_cloze(
    blocks: Sequence[Normalized],
    targets: Sequence[Sequence[int]],
    choice_lengths: Sequence[int],
    rule: str,
) -> ChoiceScore:
    """Each choice's log-likelihood as a continuation: summed, and per character (lm-eval's
    acc_norm).

    Args:
        blocks: per choice, its (n_continuation_tokens, n_vocab) normalized rows; row j is the
            distribution of the continuation's token j.
        targets: per choice, its continuation's token ids.
        choice_lengths: per choice, the characters its per-character score divides by.
        rule: "sum" or "norm": which of the two is the answer.
    """
    sums = np.array(
        [float(rows.logprobs_at(np.asarray(ids)).sum()) for rows, ids in zip(blocks, targets)]
    )
    norms = sums / np.maximum(np.asarray(choice_lengths, dtype=np.float64), 1.0)
    top = np.concatenate([rows.argmax() for rows in blocks])
    return ChoiceScore(
        option_logprobs=norms if rule == "norm" else sums, top_tokens=top, sums=sums, norms=norms
    )


# Seeds the baseline's tail draws, per question, so a record does not depend on batching.
TAIL_SAMPLING_SEED = 20250706


@dataclass
class BaselineScores:
    """The baseline's compact record: per question its option scores, per scored position the
    record of `ggflip.scoring.topk` (top K, tail mass, tail draws).

    A question owns the scored positions `row_offsets[i]:row_offsets[i + 1]` (letter: one;
    cloze: every continuation token of every choice). N questions, R positions, top K tokens,
    S tail draws.

    Attributes:
        option_logprobs: (N, max_options) float64 answer-rule scores, -inf beyond a question's
            options.
        option_sums, option_norms: (N, max_options) cloze summed / per-character log-likelihoods
            (-inf in letter mode).
        row_offsets: (N + 1,) int64 start of each question's positions.
        top_token: (R,) int32 full-vocabulary argmax.
        top_ids: (R, K) int32 most probable tokens, most probable first.
        top_logprobs: (R, K) float64 their log-probabilities.
        tail_logmass: (R,) float64 log of the probability outside the top K.
        sample_ids: (R, S) int32 tokens drawn from the baseline restricted to its tail.
        sample_logprobs: (R, S) float64 their log-probabilities.
    """

    option_logprobs: NDArray[np.float64]
    option_sums: NDArray[np.float64]
    option_norms: NDArray[np.float64]
    row_offsets: NDArray[np.int64]
    top_token: NDArray[np.int32]
    top_ids: NDArray[np.int32]
    top_logprobs: NDArray[np.float64]
    tail_logmass: NDArray[np.float64]
    sample_ids: NDArray[np.int32]
    sample_logprobs: NDArray[np.float64]

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
            top_ids=np.zeros((n_rows, k), dtype=np.int32),
            top_logprobs=np.zeros((n_rows, k), dtype=np.float64),
            tail_logmass=np.zeros(n_rows, dtype=np.float64),
            sample_ids=np.zeros((n_rows, n_samples), dtype=np.int32),
            sample_logprobs=np.zeros((n_rows, n_samples), dtype=np.float64),
        )

    @property
    def n_samples(self) -> int:
        """Tail draws per scored position."""
        return int(self.sample_ids.shape[1])

    def fits(self, n_questions: int, k: int, n_samples: int) -> bool:
        """Whether these arrays have the shapes a run of N questions at top-K and S draws needs."""
        n_rows = int(self.row_offsets[-1]) if self.row_offsets.shape == (n_questions + 1,) else -1
        return (
            self.option_logprobs.shape[0] == n_questions
            and self.option_sums.shape == self.option_logprobs.shape == self.option_norms.shape
            and self.top_ids.shape == self.top_logprobs.shape == (n_rows, k)
            and self.sample_ids.shape == self.sample_logprobs.shape == (n_rows, n_samples)
            and self.top_token.shape == self.tail_logmass.shape == (n_rows,)
        )

    def n_rows(self, index: int) -> int:
        """How many scored positions question `index` has."""
        return int(self.row_offsets[index + 1] - self.row_offsets[index])

    def rows(self, index: int) -> BaselineRows:
        """Question `index`'s per-position record, as the KL kernel takes it."""
        span = slice(int(self.row_offsets[index]), int(self.row_offsets[index + 1]))
        return BaselineRows(
            *(getattr(self, name)[span] for name in BaselineRows.__dataclass_fields__)
        )

    def normalize(
        self, index: int, logits: Sequence[NDArray[np.float32]]
    ) -> tuple[list[Normalized], list[BaselineRows]]:
        """Question `index`'s baseline rows (one array per request, in position order) normalized,
        and their compact records, in one pass per row; stored by `record`.

        Reads no state but the record's shape, so it may run on a scoring thread.
        """
        rng = np.random.default_rng([index, TAIL_SAMPLING_SEED])
        done = [
            baseline_normalize(rows, self.top_ids.shape[1], self.n_samples, rng) for rows in logits
        ]
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
        for block, record in zip(blocks, records):
            stop = row + len(block.logits)
            for name in BaselineRows.__dataclass_fields__:
                getattr(self, name)[row:stop] = getattr(record, name)
            self.top_token[row:stop] = block.argmax()
            row = stop

    def choice_score(self, index: int, n_options: int) -> ChoiceScore:
        """Question `index`'s answer as recorded."""
        start, stop = self.row_offsets[index], self.row_offsets[index + 1]
        sums = self.option_sums[index, :n_options].copy()
        norms = self.option_norms[index, :n_options].copy()
        cloze = bool(np.isfinite(sums).any())
        return ChoiceScore(
            self.option_logprobs[index, :n_options].copy(),
            self.top_token[start:stop].astype(np.int64),
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
            blocks.append(normalize(rows, self.top_ids[row:stop]))
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
            part = BaselineRows(
                *(getattr(base, name)[row:stop] for name in BaselineRows.__dataclass_fields__)
            )
            coarse, tail_gap = kl_rows(part, block)
            lower, gap, row = lower + float(coarse.sum()), gap + float(tail_gap.sum()), stop
        n = max(self.n_rows(index), 1)
        return (lower + gap) / n, lower / n

    def acceptance_to(self, index: int, blocks: Sequence[Normalized]) -> float:
        """Expected acceptance Σ min(p, q) of question `index`, averaged over its positions.

        Exact over the top K, the tail's share estimated from the tail draws
        (`ggflip.scoring.acceptance.acceptance_rows`).
        """
        base, start = self.rows(index), int(self.row_offsets[index])
        row, total = start, 0.0
        for block in blocks:
            stop = row + len(block.logits)
            span = slice(row - start, stop - start)
            part = BaselineRows(*(getattr(base, name)[span] for name in base.__dataclass_fields__))
            total += float(acceptance_rows(part, block).sum())
            row = stop
        if row != self.row_offsets[index + 1]:
            raise ValueError(
                f"question {index}: quant scored {row - self.row_offsets[index]} rows, baseline "
                f"{self.n_rows(index)}"
            )
        return total / max(self.n_rows(index), 1)


@dataclass(frozen=True)
class QuestionRow:
    """One question compared between the baseline and one quant."""

    index: int
    id: str
    subject: str
    gold: int
    base_choice: int
    base_probs: tuple[float, ...]
    quant_choice: int
    quant_probs: tuple[float, ...]
    flip: str | None
    kl: float
    kl_options: float
    same_top: bool
    top_margin: float
    n_tokens: int = 1
    base_sums: tuple[float, ...] = ()
    base_norms: tuple[float, ...] = ()
    quant_sums: tuple[float, ...] = ()
    quant_norms: tuple[float, ...] = ()
    kl_lower_bound: float = math.nan  # the top-K + merged-tail part of `kl` (nan: not recorded)
    acceptance: float = math.nan

    @property
    def changed(self) -> bool:
        return self.base_choice != self.quant_choice

    @property
    def confidence(self) -> float:
        """The baseline's top option probability."""
        return max(self.base_probs) if self.base_probs else float("nan")


def _floats(values: NDArray[np.float64] | None) -> tuple[float, ...]:
    return () if values is None else tuple(float(v) for v in values)


def compare(
    index: int,
    question: Question,
    base: ChoiceScore,
    quant: ChoiceScore,
    kl: tuple[float, float],
    acceptance: float = math.nan,
) -> QuestionRow:
    """The comparison row of one question: flip direction, option KL, top margin.

    `kl` is (estimate, lower bound) as `BaselineScores.kl_to` gives it; `acceptance` is the
    question's mean expected acceptance rate (`BaselineScores.acceptance_to`).

    `same_top` is true when the full-vocabulary argmax agrees at every scored position.
    """
    base_probs, quant_probs = base.option_probs, quant.option_probs
    base_ok, quant_ok = base.choice == question.gold, quant.choice == question.gold
    flip = (
        FLIP_LOST if base_ok and not quant_ok else FLIP_GAINED if quant_ok and not base_ok else None
    )
    kl_options = float(
        kernels.kl_divergence(
            kernels.log_softmax(base.option_logprobs), kernels.log_softmax(quant.option_logprobs)
        )
    )
    return QuestionRow(
        index=index,
        id=question.id,
        subject=question.subject,
        gold=question.gold,
        base_choice=base.choice,
        base_probs=tuple(float(p) for p in base_probs),
        quant_choice=quant.choice,
        quant_probs=tuple(float(p) for p in quant_probs),
        flip=flip,
        kl=kl[0],
        kl_lower_bound=kl[1],
        kl_options=kl_options,
        same_top=bool(np.array_equal(base.top_tokens, quant.top_tokens)),
        top_margin=float(kernels.top_margin(base_probs)),
        n_tokens=len(base.top_tokens),
        base_sums=_floats(base.sums),
        base_norms=_floats(base.norms),
        quant_sums=_floats(quant.sums),
        quant_norms=_floats(quant.norms),
        acceptance=acceptance,
    )


def paired_arrays(rows: Sequence[QuestionRow]) -> metrics.PairedArrays:
    """Stack comparison rows into the arrays the summary metrics take."""
    return metrics.PairedArrays(
        gold=np.array([r.gold for r in rows], dtype=np.int64),
        base_choice=np.array([r.base_choice for r in rows], dtype=np.int64),
        quant_choice=np.array([r.quant_choice for r in rows], dtype=np.int64),
        kl=np.array([r.kl for r in rows], dtype=np.float64),
        kl_lower_bound=np.array([r.kl_lower_bound for r in rows], dtype=np.float64),
        kl_options=np.array([r.kl_options for r in rows], dtype=np.float64),
        same_top=np.array([r.same_top for r in rows], dtype=bool),
        top_margin=np.array([r.top_margin for r in rows], dtype=np.float64),
        acceptance=np.array([r.acceptance for r in rows], dtype=np.float64),
    )
