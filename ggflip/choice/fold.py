"""Multiple choice's part of the one fold (`ggflip.runs.fold`): rows, summaries, running metrics.

`ChoiceFold` keeps each quant's comparison rows as they are scored and recomputes the summary
metrics over them with the engine's own registry (`metrics.compute`) while the quant still runs;
`current_report()` is the final report or `partial_report` over what finished.
"""

from __future__ import annotations

from collections.abc import Callable

from ggflip.choice.answers import QuestionRow, paired_arrays
from ggflip.choice.engine import partial_report
from ggflip.choice.events import (
    FLOOR,
    BaselineFinished,
    FloorFinished,
    QuantFinished,
    QuestionScored,
    Resumed,
    RunFinished,
    floor_label,
)
from ggflip.choice.report import BaselineSummary, QuantSummary, Report, SkippedQuestion
from ggflip.choice.spec import RunSpec
from ggflip.runs.fold import EventKinds, Fold, ModelProgress
from ggflip.scoring import metrics, stats

ChoiceModel = ModelProgress[QuestionRow, QuantSummary]


class ChoiceFold(Fold[QuestionRow, BaselineSummary, QuantSummary, Report]):
    """Progress and partial report of a multiple-choice run."""

    EVENTS = EventKinds(
        baseline_finished=BaselineFinished,
        quant_finished=QuantFinished,
        finished=RunFinished,
        progressed=QuestionScored,
        restored=Resumed,
    )

    def __init__(self, spec: RunSpec, clock: Callable[[], float]) -> None:
        models = [(m.label, str(m.path)) for m in spec.model_set.models]
        super().__init__(models, len(spec.questions.questions), clock)
        self.spec = spec
        if spec.floor:  # the floor's row comes right after the baseline's, as it is scored
            floor = floor_label(self.baseline_label)
            base, *quants = self.models.values()
            floor_model: ChoiceModel = ModelProgress(floor, FLOOR, base.total, base.path)
            self.models = {m.label: m for m in (base, floor_model, *quants)}
        self.floor: QuantSummary | None = None
        self.skipped: list[SkippedQuestion] = []
        self._values: dict[str, tuple[int, dict[str, float]]] = {}

    def _fold_mode(self, event: object) -> None:
        if isinstance(event, (BaselineFinished, QuantFinished)):
            self.skipped += event.skipped
        if isinstance(event, FloorFinished):
            self.floor = event.summary
            self.model_finished(event.summary.label, event.summary)
        if isinstance(event, (FloorFinished, QuantFinished)):
            self.models[event.summary.label].rows = list(event.summary.rows)

    def _partial_report(self) -> Report:
        return partial_report(self.spec, self.baseline, self.quants, self.skipped, self.floor)

    @property
    def resume_hint(self) -> str:
        """What an interrupted run keeps, for the CLI's last line."""
        if self.spec.run_store is None:
            return ""
        return "; scored questions are kept: run the same command again to resume"

    def values(self, label: str) -> dict[str, float]:
        """The registered summary metrics over `label`'s rows so far, plus the two flip counts;
        {} before any row."""
        rows = self.models[label].rows
        cached = self._values.get(label)
        if cached is not None and cached[0] == len(rows):
            return cached[1]
        values: dict[str, float] = {}
        if rows:
            arrays = paired_arrays(rows)
            values = metrics.compute("choice", arrays)
            values |= {
                "n_flips_lost": int(arrays.lost.sum()),
                "n_flips_gained": int(arrays.gained.sum()),
            }
        self._values[label] = (len(rows), values)
        return values

    def margin_buckets(self, label: str) -> list[dict[str, float | int]]:
        """Flip rate per baseline top-margin bucket over `label`'s rows so far."""
        model = self.models[label]
        if model.summary is not None:
            return model.summary.margin_buckets
        arrays = paired_arrays(model.rows)
        return stats.margin_buckets(arrays.top_margin, arrays.lost | arrays.gained)
