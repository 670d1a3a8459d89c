"""What the generation run view's text cells say, from the live state; plain strings, no Textual."""

from __future__ import annotations

from ggflip.generate.compare import TurnRow
from ggflip.generate.extract import INVALID
from ggflip.generate.report import MODE, flip_of
from ggflip.scoring.formats import DASH, num, pct, sig
from ggflip.tui.columns import appended, appended_cells, appended_pairs, duration, fit_columns
from ggflip.tui.gen_live import FLIP_LOST, GenModel, LiveGen

# The columns this view places itself: (header, width, the registered metric it shows).
OWN_COLUMNS = (
    ("model", 18, ""),
    ("acc", 11, "accuracy"),
    ("Δacc", 6, "delta_accuracy"),
    ("c→i/i→c", 8, "n_flips_lost"),
    ("same text", 9, "same_text"),
    ("1st div", 7, "first_divergence"),
    ("KL mean", 8, "kl_mean"),
    ("KL p99", 7, "kl_p99"),
    ("top-1", 7, "top1_agreement"),
)
PROGRESS_COLUMNS = (("done", 9), ("turns/s", 7), ("ETA", 5))
# The columns a narrow terminal keeps first (`columns.fit_columns`).
PRIORITY = ("model", "acc", "Δacc", "c→i/i→c", "same text", "KL mean", "done", "1st div", "ETA")


def gen_columns() -> list[tuple[str, int]]:
    """Every (column, width) of the per-model table: its own, the appended metrics, progress."""
    own = [(c, w) for c, w, _ in OWN_COLUMNS]
    return [*own, *appended_pairs(MODE, OWN_COLUMNS), *PROGRESS_COLUMNS]


def gen_table_columns(width: int) -> list[tuple[str, int]]:
    """The per-model table's columns that fit `width`, the key ones first."""
    pairs = gen_columns()
    return fit_columns(width, [c for c, _ in pairs], [w for _, w in pairs], PRIORITY)


TURN_COLUMNS = (
    "id",
    "turn",
    "gold",
    "base→quant",
    "flip",
    "1st div",
    "KL mean",
    "KL max",
    "top-1",
    "tokens",
)
# Fixed widths: a column sized by its content would change width as rows arrive, so the screen
# (and a snapshot of it) would depend on when it was drawn.
TURN_WIDTHS = (16, 4, 8, 13, 4, 7, 7, 6, 6, 7)  # ids: gsm8k-test-1318, mt_bench's 81
TURN_PRIORITY = ("id", "gold", "base→quant", "flip", "1st div", "KL mean", "turn", "KL max")


def turn_table_columns(width: int) -> list[tuple[str, int]]:
    """The turn list's columns that fit `width`, the ones that tell what happened first."""
    return fit_columns(width - 1, TURN_COLUMNS, TURN_WIDTHS, TURN_PRIORITY)  # its scrollbar


def summary_cells(live: LiveGen, model: GenModel, now: float) -> list[str]:
    """One row of the per-model table, in `gen_columns` order."""
    extra = len(appended(MODE, OWN_COLUMNS))
    if model.role == "baseline":
        accuracy = live.baseline.accuracy if live.baseline else None
        graded = sum(live.spec.items[item].answer is not None for item, _ in live.units)
        cells = [f"{model.label} (base)", acc_cell(accuracy, graded), *[""] * (7 + extra)]
    else:
        v = live.values(model.label)
        if v is None:
            cells = [model.label, *[DASH] * (8 + extra)]
        else:
            delta = "–"
            if v.accuracy is not None and v.baseline_accuracy is not None:
                delta = f"{100 * (v.accuracy - v.baseline_accuracy):+.1f}"
            median = v.first_divergence.median
            graded = sum(r.correct(live.rule) is not None for r in v.rows) if live.rule else 0
            cells = [
                model.label,
                acc_cell(v.accuracy, graded),
                delta,
                f"{v.n_flips_lost}/{v.n_flips_gained}" if live.rule else "–",
                pct(v.same_text),
                "never" if median != median else f"{median:.0f}",
                sig(v.kl_mean),
                sig(v.kl_p99),
                pct(v.top1_agreement),
                *appended_cells(MODE, OWN_COLUMNS, v),
            ]
    done = "cached" if model.status == "cached" else f"{model.done}/{model.total}"
    eta = duration(model.eta(now)) if model.status == "generating" else ""
    return [*cells, done, num(model.rate(now), 2), eta]


def acc_cell(accuracy: float | None, graded: int) -> str:
    """Accuracy with its count: `25.0% 1/4` (k correct of the n turns with a gold answer), so
    one graded turn never reads as a bare 100%."""
    if accuracy is None or graded == 0:
        return pct(accuracy)
    return f"{pct(accuracy)} {round(accuracy * graded)}/{graded}"


def answer_cell(answer: str) -> str:
    """An extracted answer as the turn list and a turn's detail show it: ∅ where the rule found
    none (the report's `[invalid]`)."""
    return "∅" if not answer or answer == INVALID else answer


def turn_cells(live: LiveGen, row: TurnRow) -> tuple[str, ...]:
    """One row of the turn list, in TURN_COLUMNS order."""
    rule = live.rule
    answers = row.answers.get(rule, ("", "")) if rule else ("", "")
    flip = flip_of(row, rule)
    arrow = "" if flip is None else "c→i" if flip == FLIP_LOST else "i→c"
    return (
        row.id,
        str(row.turn + 1),
        row.gold or "–",
        f"{answer_cell(answers[0])}→{answer_cell(answers[1])}" if rule else "–",
        arrow,
        "same" if row.first_divergence is None else str(row.first_divergence),
        sig(row.kl_mean),
        sig(row.kl_max),
        pct(row.top1_agreement),
        f"{row.n_tokens}/{row.quant_n_tokens}",
    )
