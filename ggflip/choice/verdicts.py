"""A multiple-choice quant's judgements: its verdict against the noise floor
(`ggflip.scoring.floor`) and its equivalence to the baseline (`ggflip.scoring.criteria`), each
added to its summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ggflip.choice.answers import QuestionRow
from ggflip.choice.report import QuantSummary
from ggflip.scoring import floor as floor_verdict
from ggflip.scoring.criteria import answer_equivalence
from ggflip.scoring.equivalence import Margins


def verdict_of(
    quant_rows: Sequence[QuestionRow], floor_rows: Sequence[QuestionRow]
) -> floor_verdict.Verdict:
    """The verdict of a quant's rows against the floor's, paired on the questions both scored
    (the TUI asks it of a quant scored part-way too)."""
    by_index = {r.index: r for r in floor_rows}
    paired = [(r, by_index[r.index]) for r in quant_rows if r.index in by_index]
    return floor_verdict.verdict(
        np.array([q.flip is not None for q, _ in paired], dtype=bool),
        np.array([f.flip is not None for _, f in paired], dtype=bool),
        np.array([q.kl for q, _ in paired], dtype=np.float64),
        np.array([f.kl for _, f in paired], dtype=np.float64),
    )


def with_verdict(quant: QuantSummary, floor: QuantSummary) -> QuantSummary:
    """The quant's summary with its verdict against the noise floor (`ggflip.scoring.floor`).

    Flips and KLs are paired on the questions both scored.
    """
    result = verdict_of(quant.rows, floor.rows)
    return dataclasses.replace(
        quant,
        verdict=result.verdict,
        verdict_reason=result.reason,
        floor_flips_p=result.flips_p,
        floor_kl_p=result.kl_p,
        kl_mean_over_floor=result.kl_mean_over_floor,
        floor_flips_log10_p=result.flips_log10_p,
        floor_kl_log10_p=result.kl_log10_p,
    )


def with_equivalence(quant: QuantSummary, margins: Margins) -> QuantSummary:
    """The quant's summary with its equivalence to the baseline (`ggflip.scoring.criteria`)."""
    kl = np.array([r.kl for r in quant.rows], dtype=np.float64)
    found = answer_equivalence(quant.n, quant.n_flips_lost, quant.n_flips_gained, kl, margins)
    return dataclasses.replace(quant, equivalence=found)
