"""Which criteria judge a quant equivalent to its baseline in each mode, and the per-quant
`equivalence` object every report carries.

- answers (multiple choice; generation with gold answers), over the questions (turns) both
  models answered: the accuracy difference within ±m (`accuracy`), the flip rate at most m
  (`flips`), the mean per-unit KL at most m (`kl_mean`);
- KL alone (corpus mode over its chunks, generation without gold answers over its turns).

The object (`ggflip.scoring.equivalence.combine`):

    {"verdict": "equivalent" | "different" | "undecided", "n_more": int | null,
     "criteria": {name: {"metric", "margin", "method", "unit", "n", "estimate", "ci": [lo, hi],
                         "p_lower", "p_upper", "p_beyond", "verdict", "n_more"}}}

The verdict is `equivalent` when every criterion is, `different` when any is, else `undecided`
with the most further units an undecided criterion needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ggflip.scoring.equivalence import (
    DEFAULT_MARGINS,
    Margins,
    accuracy_tost,
    combine,
    mean_bound,
    rate_bound,
)


def answer_equivalence(
    n: int,
    lost: int,
    gained: int,
    unit_kl: NDArray[np.floating],
    margins: Margins = DEFAULT_MARGINS,
    unit: str = "questions",
) -> dict[str, Any]:
    """The equivalence of a quant with answers: accuracy, flips and mean KL over n units.

    Args:
        n: units (questions, turns) graded for both models.
        lost, gained: of them, those correct only under the baseline / only under the quant.
        unit_kl: (units,) each unit's KL (a question's at the answer, a turn's mean over tokens).
    """
    criteria = {
        "accuracy": accuracy_tost(n, lost, gained, margins.accuracy, unit=unit),
        "flips": rate_bound(n, lost + gained, margins.flips, unit=unit),
        "kl_mean": mean_bound(unit_kl, margins.kl, unit=unit),
    }
    return combine(criteria)


def kl_equivalence(
    unit_kl: NDArray[np.floating], margins: Margins = DEFAULT_MARGINS, unit: str = "chunks"
) -> dict[str, Any]:
    """The equivalence of a quant judged by KL alone: the mean of independent units' KL."""
    return combine({"kl_mean": mean_bound(unit_kl, margins.kl, unit=unit)})
