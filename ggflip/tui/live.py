"""The TUI's running picture of a comparison, folded from engine events; no Textual here.

`LiveRun` keeps, per model, how far it got and when, and for each quant the comparison rows
scored so far, from which the summary metrics are recomputed with the engine's own registry
(`metrics.compute`) while the quant is still running.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ggflip.choice.answers import FLIP_GAINED, FLIP_LOST, QuestionRow, paired_arrays
from ggflip.choice.engine import partial_report
from ggflip.choice.events import FLOOR, floor_label
from ggflip.choice.report import BaselineSummary, QuantSummary, Report
from ggflip.choice.spec import RunSpec
from ggflip.runs.events import BASELINE
from ggflip.scoring import metrics, stats
from ggflip.tasks.questions import Question

DIRECTIONS: tuple[str | None, ...] = (None, FLIP_LOST, FLIP_GAINED)
SORTS: tuple[str, ...] = ("scored", "kl", "margin")


@dataclass
class ModelState:
    """How far one model of the set is, and its rows when it is a quant."""

    label: str
    role: str
    total: int
    status: str = "waiting"
    done: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    rows: list[QuestionRow] = field(default_factory=list)
    summary: QuantSummary | None = None
    _values: dict[str, float] = field(default_factory=dict)
    _values_at: int = -1

    def rate(self, now: float) -> float:
        """Questions per second since scoring started; NaN before any time has passed."""
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

    def values(self) -> dict[str, float]:
        """The registered summary metrics over the rows so far, plus the two flip counts; {} before
        any row."""
        if self._values_at != len(self.rows):
            self._values = {}
            if self.rows:
                arrays = paired_arrays(self.rows)
                self._values = metrics.compute("choice", arrays)
                self._values |= {
                    "n_flips_lost": int(arrays.lost.sum()),
                    "n_flips_gained": int(arrays.gained.sum()),
                }
            self._values_at = len(self.rows)
        return self._values

    def margin_buckets(self) -> list[dict[str, float | int]]:
        """Flip rate per baseline top-margin bucket over the rows so far."""
        if self.summary is not None:
            return self.summary.margin_buckets
        arrays = paired_arrays(self.rows)
        return stats.margin_buckets(arrays.top_margin, arrays.lost | arrays.gained)


class LiveRun:
    """Everything the run view shows, updated by the front end from engine events."""

    def __init__(self, spec: RunSpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self.clock = clock
        n = len(spec.questions.questions)
        labels = [m.label for m in spec.model_set.models]
        self.models: dict[str, ModelState] = {
            label: ModelState(label, BASELINE if i == 0 else "quant", n)
            for i, label in enumerate(labels)
        }
        if spec.floor:  # the floor's row comes right after the baseline's, as it is scored
            floor = floor_label(labels[0])
            self.models = {
                labels[0]: self.models[labels[0]],
                floor: ModelState(floor, FLOOR, n),
                **{label: self.models[label] for label in labels[1:]},
            }
        self.baseline: BaselineSummary | None = None
        self.floor: QuantSummary | None = None
        self.quants: list[QuantSummary] = []
        self.report: Report | None = None
        self.current: str | None = None
        self.state = "starting"

    @property
    def baseline_label(self) -> str:
        return self.spec.model_set.baseline.label

    @property
    def quant_labels(self) -> list[str]:
        return [m.label for m in self.spec.model_set.quants]

    def question(self, index: int) -> Question:
        return self.spec.questions.questions[index]

    def loading(self, label: str) -> None:
        self.current = label
        self.models[label].status = "loading"

    def loaded(self, label: str) -> None:
        model = self.models[label]
        model.status, model.started_at = "scoring", self.clock()

    def from_cache(self, label: str) -> None:
        model = self.models[label]
        model.status, model.done = "cached", model.total

    def scored(
        self, label: str, done: int, rows: Sequence[QuestionRow] | None
    ) -> list[QuestionRow]:
        """Record progress; returns the rows not seen before (quants only)."""
        model = self.models[label]
        model.done = done
        if rows is None:
            return []
        new = list(rows[len(model.rows) : done])
        model.rows.extend(new)
        return new

    def baseline_finished(self, summary: BaselineSummary) -> None:
        self.baseline = summary
        model = self.models[summary.label]
        if model.status != "cached":
            model.status, model.finished_at = "done", self.clock()

    def quant_finished(self, summary: QuantSummary) -> None:
        self.quants.append(summary)
        model = self.models[summary.label]
        model.summary, model.status, model.finished_at = summary, "done", self.clock()
        model.rows = list(summary.rows)

    def floor_finished(self, summary: QuantSummary) -> None:
        self.floor = summary
        model = self.models[summary.label]
        model.summary, model.status, model.finished_at = summary, "done", self.clock()
        model.rows = list(summary.rows)

    def finished(self, report: Report) -> None:
        self.report, self.state, self.current = report, "finished", None

    def stopped(self, state: str) -> None:
        """The run ended early ("cancelled" or "failed"): models still going are marked so."""
        self.state, self.current = state, None
        for model in self.models.values():
            if model.status in ("loading", "scoring"):
                model.status = state

    def current_report(self) -> Report:
        """The final report, or a partial one holding what finished so far."""
        if self.report is not None:
            return self.report
        return partial_report(self.spec, self.baseline, self.quants, floor=self.floor)

    def flips(
        self, label: str, direction: str | None, subject: str | None, sort: str
    ) -> list[QuestionRow]:
        """The flipped rows of one quant, filtered by direction and subject, in the chosen order."""
        rows = [
            r
            for r in self.models[label].rows
            if r.flip
            and (direction is None or r.flip == direction)
            and (subject is None or r.subject == subject)
        ]
        if sort == "kl":
            rows.sort(key=lambda r: -r.kl)
        elif sort == "margin":
            rows.sort(key=lambda r: r.top_margin)
        return rows

    def flip_subjects(self, label: str) -> list[tuple[str, int]]:
        """Every subject with its number of flips of quant `label` so far (the flip list's
        counts), most flips first."""
        counts: dict[str, int] = {q.subject: 0 for q in self.spec.questions.questions}
        for row in self.models[label].rows:
            if row.flip:
                counts[row.subject] = counts.get(row.subject, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def partial(self) -> list[ModelState]:
        """The quants scored part-way (neither waiting nor done): their rows cover fewer questions
        than the baseline's row."""
        return [
            model
            for model in self.models.values()
            if model.role == "quant" and model.summary is None and 0 < len(model.rows) < model.total
        ]
