"""The metric registry's machinery: entries, lookup with "did you mean", per-mode computation.

The entries themselves (and the kernels of multiple choice) are in `ggflip.scoring.metrics`,
which every user imports; see its docstring for what an entry holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ggflip.errors import UsageError, did_you_mean
from ggflip.scoring.formats import FORMATS

MODES = ("choice", "corpus", "generate")
Kernel = Callable[[Any], float]


@dataclass(frozen=True)
class Metric:
    """One registered metric; `higher_is_better` None means neither (a p-value says how sure a
    difference is, not whether the quant is good); `kernels` maps a mode to its kernel."""

    name: str
    label: str
    unit: str
    higher_is_better: bool | None
    format: str
    aggregation: str
    modes: tuple[str, ...]
    legend: str
    kernels: Mapping[str, Kernel] = field(default_factory=dict)
    short: str = ""
    column: bool = False

    def cell(self, value: float | None) -> str:
        """The value as a table cell, in the metric's format."""
        return FORMATS[self.format](value)


REGISTRY: dict[str, Metric] = {}


def register_metric(
    name: str,
    *,
    label: str,
    unit: str,
    higher_is_better: bool | None,
    format: str,
    aggregation: str,
    modes: Iterable[str],
    legend: str,
    kernel: Kernel | Mapping[str, Kernel] | None = None,
    short: str = "",
    column: bool = False,
) -> Metric:
    """Add a metric to the registry; `kernel` alone serves every one of `modes`; `column` True
    makes every table of those modes show it after its own columns.

    Raises:
        ValueError: the name is taken, a mode or the format is unknown, or a kernel's mode is not
            one of `modes`.
    """
    modes = tuple(modes)
    kernels = dict(kernel) if isinstance(kernel, Mapping) else {m: kernel for m in modes if kernel}
    if name in REGISTRY:
        raise ValueError(f"metric {name!r} is already registered")
    if not set(modes) <= set(MODES) or not set(kernels) <= set(modes):
        raise ValueError(f"metric {name!r}: modes {modes}, kernels {sorted(kernels)}: not {MODES}")
    if format not in FORMATS:
        raise ValueError(f"metric {name!r}: unknown format {format!r} (one of {sorted(FORMATS)})")
    entry = Metric(
        name, label, unit, higher_is_better, format, aggregation, modes, legend, kernels,
        short or label, column,
    )
    REGISTRY[name] = entry
    return entry


def unregister_metric(name: str) -> None:
    """Remove a metric (a test's or a plugin's) from the registry."""
    del REGISTRY[name]


def metric(name: str) -> Metric:
    """The registered metric `name`.

    Raises:
        UsageError: no such metric; the message suggests the closest names.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    hint = did_you_mean(name, REGISTRY, n=3, cutoff=0.5)
    raise UsageError(f"unknown metric {name!r}{hint} (known: {', '.join(sorted(REGISTRY))})")


def metrics_of(mode: str) -> list[Metric]:
    """The metrics that apply to `mode`, in registration order."""
    return [m for m in REGISTRY.values() if mode in m.modes]


def compute(mode: str, arrays: Any) -> dict[str, float]:
    """Every metric with a kernel for `mode`, computed from that mode's per-row `arrays`."""
    return {m.name: m.kernels[mode](arrays) for m in metrics_of(mode) if mode in m.kernels}


def extra_values(mode: str, arrays: Any, typed: Iterable[str]) -> dict[str, float]:
    """The metrics with a kernel for `mode` that are not among the summary's `typed` fields:
    what a summary stores beside its own fields."""
    known = set(typed)
    return {
        m.name: m.kernels[mode](arrays)
        for m in metrics_of(mode)
        if mode in m.kernels and m.name not in known
    }


def appended_columns(mode: str, placed: Iterable[str] = ()) -> list[Metric]:
    """The metrics a table of `mode` shows after its own columns (`column` True, not `placed`)."""
    shown = set(placed)
    return [m for m in metrics_of(mode) if m.column and m.name not in shown]


def with_extra(
    document: dict[str, Any], extra: Mapping[str, float], before: str | None
) -> dict[str, Any]:
    """A summary's JSON dict with its extra metrics inserted before the key `before` (or at the
    end); non-finite values become null, as in every ggflip document."""
    values = {k: (v if v is not None and math.isfinite(v) else None) for k, v in extra.items()}
    if not values:
        return document
    out: dict[str, Any] = {}
    for key, value in document.items():
        if key == before:
            out |= values
        out[key] = value
    return out if before in document else out | values
