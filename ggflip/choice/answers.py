"""From one model's next-token distributions to an answer, and from two answers to a comparison row.

Letter mode reads one distribution per question; cloze mode one per continuation token of
every choice. The baseline's answers and distributions are kept compactly
(`ggflip.choice.baseline.BaselineScores`); a quant's answer is compared with the baseline's here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring import kernels, metrics
from ggflip.scoring.topk import Normalized
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
    def sequence_logprobs(self) -> NDArray[np.float64]:
        """(n_options,) each option's log-probability as a sequence (letter: the letter's; cloze:
        the continuation's summed log-likelihood, whichever rule picks the answer)."""
        return self.option_logprobs if self.sums is None else self.sums

    @property
    def option_probs(self) -> NDArray[np.float64]:
        """The options' probabilities renormalized over the options (softmax of
        `sequence_logprobs`; under the per-character rule the answer is not always their argmax)."""
        return kernels.option_distribution(self.sequence_logprobs)


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

    Choices come from the answer rule; option probabilities, `kl_options` and the top margin from
    the options' sequence probabilities renormalized over the options (`ChoiceScore.option_probs`).

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
            kernels.log_softmax(base.sequence_logprobs),
            kernels.log_softmax(quant.sequence_logprobs),
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
