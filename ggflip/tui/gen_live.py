"""Live state of a generation run for the TUI: folds `run_generation`'s events, no Textual.

Per model how far it got and when; per quant the compared turns so far, from which the summary
is recomputed with the engine's own `generate.report.summarize` while the quant still runs.
The turn list filters (flips, one direction, diverged texts, every turn) and sorts (generation
order, largest teacher-forced KL, earliest divergence); a turn's token view shades each of the
baseline's tokens by its KL, with the corpus view's shades.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.text import Text

from ggflip.choice.setup import RunOptions
from ggflip.generate.compare import TurnRow
from ggflip.generate.engine import report as partial_report
from ggflip.generate.plan import answer_rules, has_gold
from ggflip.generate.report import GenBaseline, GenQuant, GenReport, flip_of, summarize
from ggflip.generate.setup import GenOptions
from ggflip.generate.spec import GenSpec
from ggflip.runs.events import BASELINE, QUANT
from ggflip.tasks.generation import is_generation_task
from ggflip.tui.corpus_live import kl_style

FLIP_LOST, FLIP_GAINED = "correct_to_incorrect", "incorrect_to_correct"
GRADED_FILTERS = ("flips", FLIP_LOST, FLIP_GAINED, "diverged", "all")
UNGRADED_FILTERS = ("diverged", "all")
FILTER_NAMES = {
    "flips": "flipped answers",
    FLIP_LOST: "correct→incorrect",
    FLIP_GAINED: "incorrect→correct",
    "diverged": "texts that differ",
    "all": "every turn",
}
GEN_SORTS = ("order", "kl", "divergence")
SORT_NAMES = {
    "order": "in generation order",
    "kl": "largest KL first",
    "divergence": "earliest divergence first",
}
DIVERGENCE_STYLE = "bold reverse"
END = "∎"  # where a text ends (or an end-of-text token, which has no text)


def gen_options(
    options: RunOptions,
    *,
    chat: bool = False,
    system: str | None = None,
    max_new_tokens: int | None = None,
) -> GenOptions | None:
    """The setup's choices as a generation run when the task is a generation task, else None."""
    if not is_generation_task(options.task, options.task_file):
        return None
    return GenOptions(
        task=options.task,
        models_path=options.models_path,
        set_name=options.set_name,
        data=options.data,
        fields=options.fields,
        shots=options.shots,
        shots_from=options.shots_from,
        limit=options.limit,
        seed=options.seed,
        first=options.first,
        baseline=options.baseline,
        quants=options.quants,
        chat=chat,
        system=system,
        max_new_tokens=max_new_tokens,
        batch_size=options.batch_size,
        cache_dir=options.cache_dir,
        no_cache=options.no_cache,
        scoring_threads=options.scoring_threads,
    )


@dataclass
class GenModel:
    """One model's progress, and its compared turns when it is a quant."""

    label: str
    role: str
    total: int
    path: str = ""
    status: str = "waiting"
    done: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    rows: list[TurnRow] = field(default_factory=list)
    summary: GenQuant | None = None
    _running: GenQuant | None = None
    _running_at: int = -1

    def rate(self, now: float) -> float:
        """Turns per second since generation started; NaN before any time has passed."""
        if self.started_at is None or self.done == 0:
            return math.nan
        elapsed = (self.finished_at if self.finished_at is not None else now) - self.started_at
        return self.done / elapsed if elapsed > 0 else math.nan

    def eta(self, now: float) -> float:
        """Seconds left at the current rate; NaN when unknown, 0 when finished."""
        if self.done >= self.total:
            return 0.0
        rate = self.rate(now)
        return (self.total - self.done) / rate if rate > 0 else math.nan

    def values(self, rule: str | None) -> GenQuant | None:
        """The engine's summary when finished, else `summarize` over the turns so far."""
        if self.summary is not None:
            return self.summary
        if not self.rows:
            return None
        if self._running_at != len(self.rows):
            ordered = sorted(self.rows, key=lambda r: r.index)
            self._running = summarize(self.label, self.path, ordered, rule, 0.0)
            self._running_at = len(self.rows)
        return self._running


class LiveGen:
    """Everything the generation run view shows, updated by the front end from engine events."""

    def __init__(self, spec: GenSpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self.clock = clock
        self.units = spec.units()
        self.rule = answer_rules(spec)[0] if has_gold(spec) else None
        self.models: dict[str, GenModel] = {
            m.label: GenModel(m.label, BASELINE if i == 0 else QUANT, len(self.units), str(m.path))
            for i, m in enumerate(spec.model_set.models)
        }
        self.baseline: GenBaseline | None = None
        self.quants: list[GenQuant] = []
        self.report: GenReport | None = None
        self.template_differs: list[str] = []
        self.current: str | None = None
        self.state = "running"

    @property
    def baseline_label(self) -> str:
        return self.spec.model_set.baseline.label

    @property
    def quant_labels(self) -> list[str]:
        return [m.label for m in self.spec.model_set.quants]

    @property
    def filters(self) -> tuple[str, ...]:
        """The turn list's filters: answer flips only mean something with gold answers."""
        return GRADED_FILTERS if self.rule else UNGRADED_FILTERS

    def prompt(self, row: TurnRow) -> str:
        """The user's text of a compared turn."""
        item, turn = self.units[row.index]
        return self.spec.items[item].turns[turn]

    def loading(self, label: str) -> None:
        self.current = label
        self.models[label].status = "loading"

    def loaded(self, label: str) -> None:
        model = self.models[label]
        model.status, model.started_at = "generating", self.clock()

    def from_cache(self, label: str) -> None:
        model = self.models[label]
        model.status, model.done = "cached", model.total

    def generated(self, label: str, done: int, total: int, rows: Sequence[TurnRow] | None) -> None:
        """Progress of one model; `rows`, a quant's cumulative list of compared turns."""
        model = self.models[label]
        model.done, model.total = done, total
        if rows is not None:
            model.rows.extend(rows[len(model.rows) :])

    def baseline_finished(self, summary: GenBaseline) -> None:
        self.baseline = summary
        model = self.models[summary.label]
        if model.status != "cached":
            model.status, model.finished_at = "done", self.clock()

    def quant_finished(self, summary: GenQuant) -> None:
        self.quants.append(summary)
        model = self.models[summary.label]
        model.summary, model.status, model.finished_at = summary, "done", self.clock()
        model.rows, model.done = list(summary.rows), summary.n

    def finished(self, report: GenReport) -> None:
        self.report, self.state, self.current = report, "finished", None

    def stopped(self, state: str) -> None:
        """The run ended early ("cancelled" or "failed"): models still going are marked so."""
        self.state, self.current = state, None
        for model in self.models.values():
            if model.status in ("loading", "generating"):
                model.status = state

    def current_report(self) -> GenReport:
        """The final report, or a partial one holding what finished so far."""
        if self.report is not None:
            return self.report
        return partial_report(
            self.spec, self.baseline, self.quants, template_differs=self.template_differs
        )

    def turns(self, label: str, shown: str, sort: str) -> list[TurnRow]:
        """One quant's compared turns that pass the filter `shown`, in the chosen order."""
        rows = [r for r in self.models[label].rows if self._passes(r, shown)]
        if sort == "kl":
            rows.sort(key=lambda r: -r.kl_mean)
        elif sort == "divergence":
            rows.sort(key=lambda r: math.inf if r.first_divergence is None else r.first_divergence)
        return rows

    def _passes(self, row: TurnRow, shown: str) -> bool:
        if shown == "all":
            return True
        if shown == "diverged":
            return row.first_divergence is not None
        flip = flip_of(row, self.rule)
        return flip is not None and (shown == "flips" or flip == shown)


def token_texts(row: TurnRow) -> tuple[Text, Text]:
    """Both generations of a turn, token by token: the baseline's shaded by teacher-forced KL,
    the token where the two first differ marked in both (∎ where one text ended), the quant's
    text after it dim."""
    if not row.base_pieces and not row.quant_pieces:  # a row without its pieces: plain texts
        return Text(row.base_text), Text(row.quant_text)
    divergence = row.first_divergence
    base, quant = Text(), Text()
    for j, piece in enumerate(row.base_pieces):
        style = kl_style(row.token_kl[j]) if j < len(row.token_kl) else ""
        if j == divergence:
            base.append(piece or END, style=f"{style} {DIVERGENCE_STYLE}".strip())
        else:
            base.append(piece, style=style)
    for j, piece in enumerate(row.quant_pieces):
        if j == divergence:
            quant.append(piece or END, style=DIVERGENCE_STYLE)
        else:
            quant.append(piece, style="dim" if divergence is not None and j > divergence else "")
    for text, pieces in ((base, row.base_pieces), (quant, row.quant_pieces)):
        if divergence is not None and divergence >= len(pieces):
            text.append(END, style=DIVERGENCE_STYLE)
    return base, quant
