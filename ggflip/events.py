"""The typed events the engine yields while a run goes; front ends fold them into a UI or a JSON document."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ggflip.scoring import QuestionRow

if TYPE_CHECKING:
    from ggflip.report import BaselineSummary, QuantSummary, Report

BASELINE = "baseline"
QUANT = "quant"


@dataclass(frozen=True)
class RunStarted:
    """The run is checked (files, vocabularies) and about to score."""

    set_name: str
    labels: tuple[str, ...]
    n_questions: int


@dataclass(frozen=True)
class ModelLoading:
    """llama.cpp is loading a model (this can take a while for big files)."""

    label: str
    role: str
    path: str


@dataclass(frozen=True)
class ModelLoaded:
    """A model is loaded and about to score."""

    label: str
    role: str
    seconds: float


@dataclass(frozen=True)
class BaselineFromCache:
    """The baseline's scores were found in the cache; it is not loaded at all."""

    label: str
    cache_path: str


@dataclass(frozen=True)
class QuestionScored:
    """One question scored by one model; quants carry the comparison row."""

    label: str
    role: str
    done: int
    total: int
    row: QuestionRow | None


@dataclass(frozen=True)
class BaselineFinished:
    """The baseline's answers are known (scored now or read from the cache)."""

    summary: BaselineSummary


@dataclass(frozen=True)
class QuantFinished:
    """A quant is scored and summarized."""

    summary: QuantSummary


@dataclass(frozen=True)
class RunFinished:
    """The run is over; `report.complete` says whether every model finished."""

    report: Report


Event = RunStarted | ModelLoading | ModelLoaded | BaselineFromCache | QuestionScored | BaselineFinished | QuantFinished | RunFinished
