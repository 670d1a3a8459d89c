"""What the generation run view's text cells say, from the live state; plain strings, no Textual."""

from __future__ import annotations

from ggflip.generate.compare import TurnRow
from ggflip.generate.extract import INVALID
from ggflip.generate.report import flip_of
from ggflip.tui.cells import duration, num, pct
from ggflip.tui.gen_live import FLIP_LOST, GenModel, LiveGen

GEN_COLUMNS = (
    "model",
    "acc",
    "Δacc",
    "c→i/i→c",
    "same text",
    "1st div",
    "KL mean",
    "KL p99",
    "top-1",
    "done",
    "turns/s",
    "ETA",
)
GEN_WIDTHS = (18, 6, 6, 8, 9, 7, 8, 7, 7, 9, 7, 5)
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


def summary_cells(live: LiveGen, model: GenModel, now: float) -> list[str]:
    """One row of the per-model table, in GEN_COLUMNS order."""
    if model.role == "baseline":
        accuracy = live.baseline.accuracy if live.baseline else None
        cells = [f"{model.label} (base)", pct(accuracy), *[""] * 7]
    else:
        v = live.values(model.label)
        if v is None:
            cells = [model.label, *["–"] * 8]
        else:
            delta = "–"
            if v.accuracy is not None and v.baseline_accuracy is not None:
                delta = f"{100 * (v.accuracy - v.baseline_accuracy):+.1f}"
            median = v.first_divergence.median
            cells = [
                model.label,
                pct(v.accuracy),
                delta,
                f"{v.n_flips_lost}/{v.n_flips_gained}" if live.rule else "–",
                pct(v.same_text),
                "never" if median != median else f"{median:.0f}",
                num(v.kl_mean),
                num(v.kl_p99),
                pct(v.top1_agreement),
            ]
    done = "cached" if model.status == "cached" else f"{model.done}/{model.total}"
    eta = duration(model.eta(now)) if model.status == "generating" else ""
    return [*cells, done, num(model.rate(now), 2), eta]


def _answer(answer: str) -> str:
    """An extracted answer as the turn list shows it: ∅ where the rule found none."""
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
        f"{_answer(answers[0])}→{_answer(answers[1])}" if rule else "–",
        arrow,
        "same" if row.first_divergence is None else str(row.first_divergence),
        f"{row.kl_mean:.4f}",
        f"{row.kl_max:.3f}",
        pct(row.top1_agreement),
        f"{row.n_tokens}/{row.quant_n_tokens}",
    )
