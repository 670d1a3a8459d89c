"""What `ggflip.attribute.engine.run_attribution` yields besides the measuring mode's own events
(which it passes up as they come: model loading, chunks or questions scored)."""

from __future__ import annotations

from dataclasses import dataclass

from ggflip.attribute.measure import Figures
from ggflip.attribute.report import AttributionReport


@dataclass(frozen=True)
class AttributionPlanned:
    """The groups are made and checked: `n_models` models to measure (the quant, the hybrids,
    the recipe's), `stored` of them already in the result store; a hybrid takes up to
    `hybrid_bytes` in `work_dir` (one at a time), which has `free_bytes`."""

    groups: tuple[str, ...]
    n_models: int
    stored: int
    hybrid_bytes: int
    work_dir: str
    free_bytes: int


@dataclass(frozen=True)
class ModelStarted:
    """Model `index` of `total` (1-based) is being written (a hybrid) and measured."""

    index: int
    total: int
    label: str


@dataclass(frozen=True)
class ModelMeasured:
    """Model `index` of `total` is measured (`stored`: its figures came from the result store)."""

    index: int
    total: int
    label: str
    figures: Figures
    seconds: float
    stored: bool


@dataclass(frozen=True)
class AttributionFinished:
    """Every model is measured; the report ranks the groups (and holds the recipe)."""

    report: AttributionReport


AttributeEvent = AttributionPlanned | ModelStarted | ModelMeasured | AttributionFinished
