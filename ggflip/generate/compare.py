"""One quant's turn against the baseline's: answers, first divergence and teacher-forced metrics.

Teacher forcing: the quant reads the baseline's prompt and generation in one prefill with
logits at every generated position, so position j is the quant's distribution of the
baseline's token j given the same prefix, and the two stay aligned after their own texts
part. Per token: KL(base || quant) from the baseline's compact record (`kl_rows`: the exact
KL of the top K plus the merged tail, plus the unbiased tail estimate), top-1 agreement
(the quant's argmax is the baseline's token) and Δp (the quant's probability of the
baseline's token minus the baseline's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Generation
from ggflip.generate.extract import extract, gold_answer
from ggflip.generate.records import BaseUnit
from ggflip.scoring.topk import kl_rows, normalize

BLOCK_ROWS = 32


@dataclass(frozen=True)
class TeacherForced:
    """Per generated token of the baseline: KL, quant's argmax agreement, Δp (shapes (n,))."""

    kl: NDArray[np.float64]
    top1: NDArray[np.bool_]
    delta_p: NDArray[np.float64]


def teacher_forced(unit: BaseUnit, logits: NDArray[np.float32]) -> TeacherForced:
    """The quant's teacher-forced metrics from its logits at the baseline's generated positions."""
    n = len(unit.tokens)
    targets = np.asarray(unit.tokens, dtype=np.int64)
    kl, top1, delta_p = np.empty(n), np.empty(n, dtype=bool), np.empty(n)
    for start in range(0, n, BLOCK_ROWS):
        block = slice(start, min(n, start + BLOCK_ROWS))
        part = unit.rows[block]
        norm = normalize(logits[block], part.top_ids)
        coarse, gap = kl_rows(part, norm)
        kl[block] = coarse + gap
        top1[block] = np.argmax(logits[block], axis=-1) == targets[block]
        quant_lp = norm.logprobs_at(targets[block])
        delta_p[block] = np.exp(quant_lp) - np.exp(unit.target_logprob[block])
    return TeacherForced(kl, top1, delta_p)


def first_divergence(base: Sequence[int], quant: Sequence[int]) -> int | None:
    """Index of the first generated token where the two differ; None when they are identical.

    A generation that is a strict prefix of the other diverges where it ends.
    """
    for index, (a, b) in enumerate(zip(base, quant)):
        if a != b:
            return index
    return None if len(base) == len(quant) else min(len(base), len(quant))


@dataclass(frozen=True)
class TurnRow:
    """One turn of one question, compared (the per-question row of the report).

    `answers` maps each answer rule to (baseline's, quant's) extracted answers; `gold` is the
    gold answer as the answer rule normalizes it (None without one). KL fields are per token
    of the baseline's generation; `token_kl[j]` belongs to the baseline's token j, whose text
    is `base_pieces[j]` (the quant's own tokens: `quant_pieces`), for the TUI's token view.
    """

    index: int
    id: str
    turn: int
    gold: str | None
    answers: dict[str, tuple[str, str]]
    base_text: str
    quant_text: str
    base_truncated: bool
    quant_truncated: bool
    n_tokens: int
    quant_n_tokens: int
    n_prompt_tokens: int  # the prompt every model read, BOS and special tokens included
    first_divergence: int | None
    kl_mean: float
    kl_max: float
    top1_agreement: float
    delta_p_sum: float
    delta_p_sq_sum: float
    token_kl: tuple[float, ...]
    base_pieces: tuple[str, ...] = ()
    quant_pieces: tuple[str, ...] = ()

    def correct(self, rule: str) -> tuple[bool, bool] | None:
        """Whether each model's answer under `rule` equals the gold (None without a gold)."""
        if self.gold is None or rule not in self.answers:
            return None
        base, quant = self.answers[rule]
        return base == self.gold, quant == self.gold


def compare_turn(
    index: int,
    item_id: str,
    turn: int,
    gold: str | None,
    rules: Sequence[str],
    unit: BaseUnit,
    quant: Generation,
    logits: NDArray[np.float32],
    base_pieces: Sequence[str] = (),
    quant_pieces: Sequence[str] = (),
) -> TurnRow:
    """The comparison row of one turn (the pieces: the text of each token of either generation,
    to keep both texts token by token); numpy only, so it runs on a scoring thread."""
    forced = teacher_forced(unit, logits)
    n = len(unit.tokens)
    answers = {
        rule: (extract(rule, unit.text, gold), extract(rule, quant.text, gold)) for rule in rules
    }
    return TurnRow(
        index=index,
        id=item_id,
        turn=turn,
        gold=gold_answer(rules[0], gold) if rules else None,
        answers=answers,
        base_text=unit.text,
        quant_text=quant.text,
        base_truncated=unit.finish == "length",
        quant_truncated=quant.finish == "length",
        n_tokens=n,
        quant_n_tokens=len(quant.tokens),
        n_prompt_tokens=len(unit.prompt),
        first_divergence=first_divergence(unit.tokens, quant.tokens),
        kl_mean=float(forced.kl.mean()) if n else 0.0,
        kl_max=float(forced.kl.max()) if n else 0.0,
        top1_agreement=float(forced.top1.mean()) if n else 1.0,
        delta_p_sum=float(forced.delta_p.sum()),
        delta_p_sq_sum=float(np.square(forced.delta_p).sum()),
        token_kl=tuple(float(v) for v in forced.kl),
        base_pieces=tuple(base_pieces),
        quant_pieces=tuple(quant_pieces),
    )
