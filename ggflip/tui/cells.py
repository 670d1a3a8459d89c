"""What the run view's text cells say, computed from the live state; plain strings, no Textual."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ggflip.choice.answers import FLIP_LOST, QuestionRow
from ggflip.tasks.questions import LETTERS
from ggflip.tui.live import LiveRun, ModelState

SUMMARY_COLUMNS = (
    "model",
    "acc",
    "Δacc",
    "flips",
    "c→i/i→c",
    "changes",
    "KL mean",
    "KL p99",
    "same top",
    "done",
    "q/s",
    "ETA",
)
SUMMARY_WIDTHS = (18, 6, 6, 6, 8, 7, 7, 7, 8, 11, 6, 5)
# Under 120 columns the table keeps what judges a quant and drops the rest (the q/s and ETA are
# in the progress rows' state, the distributions' tails in the report).
NARROW_COLUMNS = ("model", "acc", "Δacc", "flips", "c→i/i→c", "KL mean", "same top", "done")
NARROW_WIDTH = 120


def fit_columns(
    width: int, columns: Sequence[str], widths: Sequence[int], narrow: Sequence[str]
) -> list[tuple[str, int]]:
    """A table's (column, width) pairs for a terminal `width` columns wide: all of them from
    NARROW_WIDTH on, else only the `narrow` ones, with a shorter model column."""
    pairs = list(zip(columns, widths))
    if width >= NARROW_WIDTH:
        return pairs
    return [(c, 12 if c == "model" else w) for c, w in pairs if c in narrow]


def summary_columns(width: int) -> list[tuple[str, int]]:
    """The run view's summary table columns at `width`."""
    return fit_columns(width, SUMMARY_COLUMNS, SUMMARY_WIDTHS, NARROW_COLUMNS)


FLIP_COLUMNS = ("id", "subject", "gold", "base→quant", "direction", "KL", "margin")
SORT_NAMES = {
    "scored": "in scoring order",
    "kl": "largest KL first",
    "margin": "smallest margin first",
}


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal; "–" when unknown."""
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 4) -> str:
    """A number with fixed decimals; "–" when unknown."""
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def duration(seconds: float) -> str:
    """Seconds as m:ss (or XhMM past an hour); "–" when unknown."""
    if math.isnan(seconds):
        return "–"
    whole = round(seconds)
    return (
        f"{whole // 60}:{whole % 60:02d}"
        if whole < 3600
        else f"{whole // 3600}h{whole % 3600 // 60:02d}"
    )


def summary_cells(live: LiveRun, model: ModelState, now: float) -> list[str]:
    """One row of the per-model table, in SUMMARY_COLUMNS order."""
    if model.role == "baseline":
        accuracy = live.baseline.accuracy if live.baseline else None
        cells = [f"{model.label} (base)", pct(accuracy), "", "", "", "", "", "", ""]
    else:
        v = live.values(model.label)
        cells = [
            model.label,
            pct(v.get("accuracy")),
            f"{100 * v['delta_accuracy']:+.1f}" if v else "–",
            pct(v.get("flips")),
            f"{v['n_flips_lost']}/{v['n_flips_gained']}" if v else "–",
            pct(v.get("answer_changes")),
            num(v.get("kl_mean")),
            num(v.get("kl_p99")),
            pct(v.get("same_top")),
        ]
    done = "cached" if model.status == "cached" else f"{model.done}/{model.total}"
    eta = duration(model.eta(now)) if model.status == "scoring" else ""
    return [*cells, done, num(model.rate(now), 1), eta]


def paired_note(live: LiveRun) -> str:
    """The line under the table while a quant is part-way: its row is over the questions it has
    scored, so say how many and what the baseline scores on those same questions."""
    notes = []
    for model in live.partial():
        v = live.values(model.label)
        n = len(model.rows)
        notes.append(
            f"{model.label} row: of {n} questions so far; {live.baseline_label} on those {n}: "
            f"{pct(v['baseline_accuracy'])} ({live.baseline_label} row: all {model.total})."
        )
    return " ".join(notes)


def flip_cells(row: QuestionRow) -> tuple[str, ...]:
    """One row of the flip list, in FLIP_COLUMNS order."""
    arrow = "c→i" if row.flip == FLIP_LOST else "i→c"
    answers = f"{LETTERS[row.base_choice]}→{LETTERS[row.quant_choice]}"
    return (
        row.id,
        row.subject,
        LETTERS[row.gold],
        answers,
        arrow,
        f"{row.kl:.4f}",
        f"{row.top_margin:.3f}",
    )
