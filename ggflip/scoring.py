"""From one model's next-token distribution to an answer, and from two answers to a comparison row.

The baseline's distribution is kept compactly (`BaselineScores`: option log-probs, argmax and
the top-K log-probs plus tail mass); a quant's is compared with it while its full
distribution is still in memory, so the full-vocabulary KL never needs both full rows at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from ggflip import metrics
from ggflip.questions import Question

FLIP_LOST = "correct_to_incorrect"
FLIP_GAINED = "incorrect_to_correct"


@dataclass(frozen=True)
class LetterScore:
    """One model's answer to one question."""

    option_logprobs: NDArray[np.float64]
    top_token: int

    @property
    def choice(self) -> int:
        return int(np.argmax(self.option_logprobs))

    @property
    def option_probs(self) -> NDArray[np.float64]:
        return metrics.option_distribution(self.option_logprobs)


def score_letters(logprobs: NDArray[np.float64], variants: Sequence[Sequence[int]]) -> LetterScore:
    """Option log-probs (logsumexp over each letter's token variants) and the full-vocab argmax.

    Args:
        logprobs: (n_vocab,) float64 log-probabilities at the answer position.
        variants: per option, the token ids that spell its letter.
    """
    option_logprobs = np.array([metrics.logsumexp(logprobs[list(ids)]) for ids in variants])
    return LetterScore(option_logprobs=option_logprobs, top_token=int(np.argmax(logprobs)))


@dataclass
class BaselineScores:
    """The baseline's compact per-question record, for N questions and top-K tokens.

    Attributes:
        option_logprobs: (N, max_options) float64, -inf beyond a question's options.
        top_token: (N,) int32 full-vocabulary argmax.
        top_ids: (N, K) int32 most probable tokens, most probable first.
        top_logprobs: (N, K) float32 their log-probabilities.
        tail_logmass: (N,) float64 log of the probability outside the top K.
    """

    option_logprobs: NDArray[np.float64]
    top_token: NDArray[np.int32]
    top_ids: NDArray[np.int32]
    top_logprobs: NDArray[np.float32]
    tail_logmass: NDArray[np.float64]

    @classmethod
    def empty(cls, n_questions: int, max_options: int, k: int) -> "BaselineScores":
        return cls(
            option_logprobs=np.full((n_questions, max_options), -np.inf),
            top_token=np.zeros(n_questions, dtype=np.int32),
            top_ids=np.zeros((n_questions, k), dtype=np.int32),
            top_logprobs=np.zeros((n_questions, k), dtype=np.float32),
            tail_logmass=np.zeros(n_questions, dtype=np.float64),
        )

    def record(self, index: int, score: LetterScore, logprobs: NDArray[np.float64]) -> None:
        """Store question `index`'s answer and the compact form of its distribution."""
        n_options = len(score.option_logprobs)
        self.option_logprobs[index, :n_options] = score.option_logprobs
        self.top_token[index] = score.top_token
        ids, top = metrics.top_k(logprobs, self.top_ids.shape[1])
        self.top_ids[index], self.top_logprobs[index] = ids, top
        self.tail_logmass[index] = metrics.tail_log_mass(logprobs, ids)

    def letter_score(self, index: int, n_options: int) -> LetterScore:
        return LetterScore(self.option_logprobs[index, :n_options].copy(), int(self.top_token[index]))

    def kl_to(self, index: int, q_logprobs: NDArray[np.float64]) -> float:
        """KL(baseline || quant) at question `index`, from the baseline's top-K form."""
        return metrics.kl_from_top_k(
            self.top_ids[index], self.top_logprobs[index], float(self.tail_logmass[index]), q_logprobs
        )


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

    @property
    def changed(self) -> bool:
        return self.base_choice != self.quant_choice


def compare(index: int, question: Question, base: LetterScore, quant: LetterScore, kl: float) -> QuestionRow:
    """The comparison row of one question: flip direction, option KL, top margin."""
    base_probs, quant_probs = base.option_probs, quant.option_probs
    base_ok, quant_ok = base.choice == question.gold, quant.choice == question.gold
    flip = FLIP_LOST if base_ok and not quant_ok else FLIP_GAINED if quant_ok and not base_ok else None
    kl_options = float(
        metrics.kl_divergence(metrics.log_softmax(base.option_logprobs), metrics.log_softmax(quant.option_logprobs))
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
        kl=kl,
        kl_options=kl_options,
        same_top=base.top_token == quant.top_token,
        top_margin=float(metrics.top_margin(base_probs)),
    )


def paired_arrays(rows: Sequence[QuestionRow]) -> metrics.PairedArrays:
    """Stack comparison rows into the arrays the summary metrics take."""
    return metrics.PairedArrays(
        gold=np.array([r.gold for r in rows], dtype=np.int64),
        base_choice=np.array([r.base_choice for r in rows], dtype=np.int64),
        quant_choice=np.array([r.quant_choice for r in rows], dtype=np.int64),
        kl=np.array([r.kl for r in rows], dtype=np.float64),
        kl_options=np.array([r.kl_options for r in rows], dtype=np.float64),
        same_top=np.array([r.same_top for r in rows], dtype=bool),
        top_margin=np.array([r.top_margin for r in rows], dtype=np.float64),
    )
