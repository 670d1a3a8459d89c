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
from ggflip.runs.fold import EventKinds, Fold, Note


class GenFold(Fold[TurnRow, GenBaseline, GenQuant, GenReport]):
    """Progress and partial report of a generation run."""

    EVENTS = EventKinds(
        baseline_finished=GenBaselineFinished,
        quant_finished=GenQuantFinished,
        finished=GenFinished,
        progressed=TurnGenerated,
        restored=TurnsRestored,
    )
    WORKING = "generating"
    UNIT = "turns"
    REDO = "generates"

    def __init__(self, spec: GenSpec, clock: Callable[[], float]) -> None:
        self.units = spec.units()
        models = [(m.label, str(m.path)) for m in spec.model_set.models]
        super().__init__(models, len(self.units), clock)
        self.spec = spec
        self.rule = answer_rules(spec)[0] if has_gold(spec) else None
        self.template_differs: list[str] = []
        self._running: dict[str, tuple[int, GenQuant]] = {}

    def _fold_mode(self, event: object) -> None:
        if isinstance(event, ChatTemplateDiffers):
            self.template_differs.append(event.label)
            self.notes.append(
                Note(
                    f"{event.label}: its chat template differs from the baseline's; every model "
                    "is asked through the baseline's",
                    warning=True,
                )
            )
        elif isinstance(event, GenQuantFinished):
            model = self.models[event.summary.label]
            model.rows, model.done = list(event.summary.rows), event.summary.n

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
            cached = (len(model.rows), summarize(
                label, model.path, ordered, self.rule, 0.0, self.spec.margins
            ))
            self._running[label] = cached
        return cached[1]
