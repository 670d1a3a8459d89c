"""Generation's part of the one fold (`ggflip.runs.fold`): compared turns, summaries.

`GenFold` keeps each quant's compared turns as they are generated and recomputes its summary
with the engine's own `generate.report.summarize` while the quant still runs;
`current_report()` is the final report or `engine.report` over what finished.
"""

from __future__ import annotations

from collections.abc import Callable

from ggflip.generate.compare import TurnRow
from ggflip.generate.engine import report as partial_report
from ggflip.generate.events import (
    ChatTemplateDiffers,
    GenBaselineFinished,
    GenFinished,
    GenQuantFinished,
    TurnGenerated,
    TurnsRestored,
)
from ggflip.generate.plan import answer_rules, has_gold
from ggflip.generate.report import GenBaseline, GenQuant, GenReport, summarize
from ggflip.generate.spec import GenSpec
from ggflip.runs.fold import Fold, Note


class GenFold(Fold[TurnRow, GenQuant, GenReport]):
    """Progress and partial report of a generation run."""

    WORKING = "generating"
    UNIT = "turns"

    def __init__(self, spec: GenSpec, clock: Callable[[], float]) -> None:
        self.units = spec.units()
        models = [(m.label, str(m.path)) for m in spec.model_set.models]
        super().__init__(models, len(self.units), clock)
        self.spec = spec
        self.rule = answer_rules(spec)[0] if has_gold(spec) else None
        self.baseline: GenBaseline | None = None
        self.quants: list[GenQuant] = []
        self.template_differs: list[str] = []
        self._running: dict[str, tuple[int, GenQuant]] = {}

    def _fold_mode(self, event: object) -> None:
        if isinstance(event, TurnGenerated):
            model = self.models[event.label]
            model.done, model.total = event.done, event.total
            if event.row is not None:
                model.rows.append(event.row)
        elif isinstance(event, TurnsRestored):
            self.notes.append(
                Note(
                    f"{event.label}: {event.n_restored} of {event.total} turns restored from the "
                    "run store (--no-resume generates them again)"
                )
            )
        elif isinstance(event, ChatTemplateDiffers):
            self.template_differs.append(event.label)
            self.notes.append(
                Note(
                    f"{event.label}: its chat template differs from the baseline's; every model "
                    "is asked through the baseline's",
                    warning=True,
                )
            )
        elif isinstance(event, GenBaselineFinished):
            self.baseline = event.summary
            self.model_finished(event.summary.label)
        elif isinstance(event, GenQuantFinished):
            self.quants.append(event.summary)
            self.model_finished(event.summary.label, event.summary)
            model = self.models[event.summary.label]
            model.rows, model.done = list(event.summary.rows), event.summary.n
        elif isinstance(event, GenFinished):
            self.finished(event.report)

    def _partial_report(self) -> GenReport:
        return partial_report(
            self.spec, self.baseline, self.quants, template_differs=self.template_differs
        )

    @property
    def resume_hint(self) -> str:
        """What an interrupted run keeps, for the CLI's last line."""
        return "; run the same command again to resume"

    def values(self, label: str) -> GenQuant | None:
        """The engine's summary of `label` when finished, else `summarize` over its turns so far."""
        model = self.models[label]
        if model.summary is not None:
            return model.summary
        if not model.rows:
            return None
        cached = self._running.get(label)
        if cached is None or cached[0] != len(model.rows):
            ordered = sorted(model.rows, key=lambda r: r.index)
            cached = (len(model.rows), summarize(label, model.path, ordered, self.rule, 0.0))
            self._running[label] = cached
        return cached[1]
