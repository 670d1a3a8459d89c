"""What the multiple-choice run view's text cells say, from the live state; plain strings, no
Textual."""

from __future__ import annotations

from ggflip.choice.answers import FLIP_LOST, QuestionRow
from ggflip.runs.events import QUANT
from ggflip.scoring.floor import DIFFERENT, INDISTINGUISHABLE
from ggflip.scoring.formats import DASH, num, pct, points, sig
from ggflip.tasks.questions import LETTERS
from ggflip.tui.choice_live import LiveRun, ModelState
from ggflip.tui.columns import appended, appended_cells, appended_pairs, duration, fit_columns

# The columns this view places itself: (header, width, the registered metric it shows).
OWN_COLUMNS = (
    ("model", 18, ""),
    ("acc", 6, "accuracy"),
    ("Δacc", 6, "delta_accuracy"),
    ("flips", 6, "flips"),
    ("c→i/i→c", 8, "n_flips_lost"),
    ("changes", 7, "answer_changes"),
    ("KL mean", 7, "kl_mean"),
    ("KL p99", 7, "kl_p99"),
    ("same top", 8, "same_top"),
    ("verdict", 9, ""),
)
PROGRESS_COLUMNS = (("done", 11), ("q/s", 6), ("ETA", 5))
# The columns a narrow terminal keeps first: what judges a quant, then how far the run is.
PRIORITY = (
    "model",
    "acc",
    "Δacc",
    "flips",
    "verdict",
    "KL mean",
    "done",
    "ETA",
    "c→i/i→c",
    "same top",
)
VERDICT_WORDS = {INDISTINGUISHABLE: "≈ floor", DIFFERENT: "different"}


def column_pairs() -> list[tuple[str, int]]:
    """Every (column, width) of the per-model table: its own, the appended metrics, progress."""
    own = [(c, w) for c, w, _ in OWN_COLUMNS]
    return [*own, *appended_pairs("choice", OWN_COLUMNS), *PROGRESS_COLUMNS]


def summary_columns(width: int, floor: bool = True) -> list[tuple[str, int]]:
    """The run view's summary table columns at `width` (the verdict only with a `floor`)."""
    pairs = [(c, w) for c, w in column_pairs() if floor or c != "verdict"]
    return fit_columns(width, [c for c, _ in pairs], [w for _, w in pairs], PRIORITY)


FLIP_COLUMNS = ("id", "subject", "gold", "base→quant", "direction", "KL", "margin")
SORT_NAMES = {
    "scored": "in scoring order",
    "kl": "largest KL first",
    "margin": "smallest margin first",
}


def summary_cells(live: LiveRun, model: ModelState, now: float) -> list[str]:
    """One row of the per-model table, in `column_pairs` order."""
    extra = len(appended("choice", OWN_COLUMNS))
    if model.role == "baseline":
        accuracy = live.baseline.accuracy if live.baseline else None
        cells = [f"{model.label} (base)", pct(accuracy), *[""] * (8 + extra)]
    else:
        v = live.values(model.label)
        cells = [
            model.label,
            pct(v.get("accuracy")),
            points(v["delta_accuracy"]) if v else DASH,
            pct(v.get("flips")),
            f"{v['n_flips_lost']}/{v['n_flips_gained']}" if v else DASH,
            pct(v.get("answer_changes")),
            sig(v.get("kl_mean")),
            sig(v.get("kl_p99")),
            pct(v.get("same_top")),
            verdict_cell(live, model),
            *appended_cells("choice", OWN_COLUMNS, v or None),
        ]
    done = "cached" if model.status == "cached" else f"{model.done}/{model.total}"
    eta = duration(model.eta(now)) if model.status == "scoring" else ""
    return [*cells, done, num(model.rate(now), 1), eta]


def verdict_cell(live: LiveRun, model: ModelState) -> str:
    """A quant's verdict against the floor ("" on the floor's own row, – before there is one)."""
    if model.role != QUANT:
        return ""
    verdict = live.verdict(model.label)
    return DASH if verdict is None else VERDICT_WORDS.get(verdict, verdict)


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
        sig(row.kl),
        num(row.top_margin, 3),
    )
