"""The typed events the engine yields while a run goes; front ends fold them into a UI or a JSON
document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ggflip.choice.answers import QuestionRow
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading

if TYPE_CHECKING:
    from ggflip.choice.report import BaselineSummary, QuantSummary, Report, SkippedQuestion


@dataclass(frozen=True)
class RunStarted:
    """The run is checked (files, vocabularies) and about to score."""

    set_name: str
    labels: tuple[str, ...]
    n_questions: int


@dataclass(frozen=True)
class Resumed:
    """`n_restored` of a model's questions were found in the run store and are not scored again.

    Their `QuestionScored` events follow at once; only the rest of the questions are scored.
    """

    label: str
    role: str
    n_restored: int
    total: int


@dataclass(frozen=True)
class QuestionScored:
    """One question scored (or restored) by one model; quants carry the comparison row.

    `row` is None for the baseline, and for a question skipped for this model (its reason is
    in the report's `skipped_questions`).
    """

    label: str
    role: str
    done: int
    total: int
    row: QuestionRow | None


@dataclass(frozen=True)
class BaselineFinished:
    """The baseline's answers are known (scored now or read from the cache); `skipped`: questions it
    could not score."""

    summary: BaselineSummary
    skipped: tuple[SkippedQuestion, ...] = ()


@dataclass(frozen=True)
class QuantFinished:
    """A quant is scored and summarized; `skipped`: questions it could not score (beyond the
    baseline's)."""

    summary: QuantSummary
    skipped: tuple[SkippedQuestion, ...] = ()


FLOOR = "floor"
"""The role of the noise floor's pass: the baseline scored again under another decode grouping."""


def floor_label(baseline_label: str) -> str:
    """The noise floor's row label, e.g. "F16 (floor)"."""
    return f"{baseline_label} (floor)"


@dataclass(frozen=True)
class FloorFinished:
    """The noise floor (the baseline against itself under another decode grouping) is summarized."""

    summary: QuantSummary
    method: str


@dataclass(frozen=True)
class RunFinished:
    """The run is over; `report.complete` says whether every model finished."""

    report: Report


Event = (
    RunStarted
    | ModelLoading
    | ModelLoaded
    | BaselineFromCache
    | Resumed
    | QuestionScored
    | BaselineFinished
    | FloorFinished
    | QuantFinished
    | RunFinished
)
