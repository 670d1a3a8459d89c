"""The events a generation run yields (beside the model lifecycle events of `ggflip.runs`)."""

from __future__ import annotations

from dataclasses import dataclass

from ggflip.generate.compare import TurnRow
from ggflip.generate.report import GenBaseline, GenQuant, GenReport


@dataclass(frozen=True)
class GenStarted:
    """Every file and vocabulary is checked; `n_units` turns will be generated per model."""

    set: str
    labels: tuple[str, ...]
    n_units: int


@dataclass(frozen=True)
class ChatTemplateDiffers:
    """Under the chat template, this quant's own template is not the baseline's (a warning)."""

    label: str
    path: str


@dataclass(frozen=True)
class TurnsRestored:
    """Some turns of a model came back from the run store instead of being generated."""

    label: str
    role: str
    n_restored: int
    total: int


@dataclass(frozen=True)
class TurnGenerated:
    """One turn of one model is done (`row`: a quant's comparison, None for the baseline)."""

    label: str
    role: str
    done: int
    total: int
    row: TurnRow | None


@dataclass(frozen=True)
class GenBaselineFinished:
    """The baseline's generations and records are ready."""

    summary: GenBaseline


@dataclass(frozen=True)
class GenQuantFinished:
    """One quant is compared."""

    summary: GenQuant


@dataclass(frozen=True)
class GenFinished:
    """The run is done; the report is final."""

    report: GenReport
