"""The memory–damage frontier of a report: which files are not beaten on both size and damage.

Pure: reads a report's JSON document (any mode) and returns plain values; no I/O.

Each model of a report (the baseline and every quant) is a point (memory, damage). Memory is the
model's `memory.total_bytes` (weights + KV cache at the run's context + compute buffer, see
`ggflip.gguf.memory`); a report written before memory was recorded, whose models carry no
`memory` key at all, falls back to `file_size` for every model, and says so in `notes` and in
`memory_basis` ("file_size": no KV cache counted). A model whose `memory` is null (its size could
not be read), or without a value of the damage metric, is left out with the reason: never
guessed. The baseline is a point too, with the damage it has against itself by definition (0, or
1 for a ratio), so the frontier answers "which file" and not only "which quant".

Dominance: A dominates B when A.memory <= B.memory and A.damage <= B.damage, at least one of the
two strictly. Two points equal in both dominate neither and are both on the frontier. A dominated
point names one frontier point that dominates it: the one with the least memory (then the least
damage, then the first in report order), i.e. the smallest file at least as good.

The `frontier` object of every report (`frontier_object`):

    {"by": str, "label": str, "unit": str,
     "memory_basis": "total_bytes" | "file_size", "ctx": int | null, "kv_type": str | null,
     "points": [{"label", "role": "baseline" | "quant", "memory_bytes", "damage",
                 "damage_interval": [lo, hi] | null, "bits_per_weight": float | null,
                 "on_frontier": bool, "dominated_by": str | null}],   # by memory, then damage
     "left_out": [{"label", "reason"}],
     "floor": null | {"label", "damage", "damage_interval"},
     "notes": [str]}

`damage_interval` is the report's 95% interval of the value (`<key>_ci`), or the value ± 1.96
times its standard error (`<key>_unc`), or null. `floor` is the report's noise floor (the
baseline scored again under another decode grouping) in the same metric: damage at or below it
is what re-running the baseline does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggflip.errors import UsageError
from ggflip.scoring.registry import REGISTRY, metric

DEFAULT_BY = "kl_mean"
Z95 = 1.959963984540054

ALIASES = {
    "kl": "kl_mean",
    "mean": "kl_mean",
    "p90": "kl_p90",
    "p99": "kl_p99",
    "p99.9": "kl_p99_9",
    "max": "kl_max",
    "ppl": "ppl_ratio",
    "changes": "answer_changes",
}
# llama-perplexity's KL percentiles of a corpus report, not registered metrics of their own.
_PERCENTILES = {"kl_p99_9": "KL p99.9", "kl_p95": "KL p95", "kl_p90": "KL p90", "kl_p99": "KL p99"}
_RATIO_UNITS = ("ratio",)
SOURCE_MARK = "≈ source"


@dataclass(frozen=True)
class Damage:
    """The damage metric a frontier is drawn in: its JSON key, label, unit and cell format."""

    key: str
    label: str
    unit: str
    format: str

    @property
    def baseline_value(self) -> float:
        """The baseline's damage against itself: 1 for a ratio, else 0."""
        return 1.0 if self.unit in _RATIO_UNITS else 0.0


def mode_of(document: Mapping[str, Any]) -> str:
    """The mode of a report document: "choice", "corpus" or "generate"."""
    if document.get("mode") == "kld":
        return "corpus"
    if str(document.get("schema", "")).startswith("ggflip.generate/"):
        return "generate"
    return "choice"


def damage_choices(mode: str) -> list[str]:
    """The damage metrics of `mode`: registered ones where lower is better (counts and seconds
    aside), and a corpus report's KL percentiles."""
    names = [
        m.name
        for m in REGISTRY.values()
        if mode in m.modes
        and m.higher_is_better is False
        and m.format not in ("count", "seconds")
        and m.name != "kl_mean_lower_bound"
    ]
    if mode == "corpus":
        names += [k for k in _PERCENTILES if k not in names]
    return names


def damage_metric(by: str, mode: str) -> Damage:
    """The damage metric `by` names in `mode` (a metric name or an alias: p99, p99.9, flips, ppl).

    Raises:
        UsageError: not a damage metric of this mode; the message lists those that are.
    """
    key = ALIASES.get(by.strip().lower(), by.strip())
    choices = damage_choices(mode)
    if key not in choices:
        shown = ", ".join([*ALIASES, *choices])
        raise UsageError(f"--by {by}: not a damage metric of a {mode} report (one of: {shown})")
    if key in REGISTRY:
        entry = metric(key)
        return Damage(key, entry.label, entry.unit, entry.format)
    return Damage(key, _PERCENTILES[key], "nats", "kl")


@dataclass(frozen=True)
class Point:
    """One model at (memory, damage)."""

    label: str
    role: str
    memory_bytes: int
    damage: float
    damage_interval: tuple[float, float] | None = None
    bits_per_weight: float | None = None


@dataclass(frozen=True)
class Placed:
    """A point and its place: on the frontier, or the frontier point that dominates it."""

    point: Point
    dominated_by: str | None

    @property
    def on_frontier(self) -> bool:
        return self.dominated_by is None


def dominates(a: Point, b: Point) -> bool:
    """A is no larger and no more damaged than B, and strictly better in one of the two."""
    no_worse = a.memory_bytes <= b.memory_bytes and a.damage <= b.damage
    return no_worse and (a.memory_bytes < b.memory_bytes or a.damage < b.damage)


def place(points: Sequence[Point]) -> list[Placed]:
    """Every point with its place, sorted by memory, then damage (then report order)."""
    order = sorted(range(len(points)), key=lambda i: (points[i].memory_bytes, points[i].damage, i))
    ordered = [points[i] for i in order]
    front = [p for p in ordered if not any(dominates(q, p) for q in ordered)]
    placed = []
    for p in ordered:
        beaten_by = next((q.label for q in front if dominates(q, p)), None)
        placed.append(Placed(p, beaten_by))
    return placed


def interval_of(model: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    """The 95% interval of `model[key]`: its `<key>_ci`, or ± 1.96 standard errors (`_unc`)."""
    ci = model.get(f"{key}_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return float(ci[0]), float(ci[1])
    value, unc = model.get(key), model.get(f"{key}_unc")
    if isinstance(value, (int, float)) and isinstance(unc, (int, float)) and math.isfinite(unc):
        return float(value) - Z95 * unc, float(value) + Z95 * unc
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def memory_basis(models: Sequence[Mapping[str, Any]]) -> str:
    """"total_bytes" when any model carries a `memory` key (then a model without one is left
    out); "file_size" for a report written before memory was recorded."""
    return "total_bytes" if any("memory" in m for m in models) else "file_size"


def memory_of(model: Mapping[str, Any], basis: str) -> tuple[int | None, str]:
    """A model's memory in bytes under `basis`, or None and why not."""
    if basis == "file_size":
        size = model.get("file_size")
        if isinstance(size, int) and size > 0:
            return size, ""
        return None, "the report has neither its memory nor its file size"
    if "memory" not in model:
        return None, "no memory estimate in the report (the others have one)"
    memory = model["memory"]
    if memory is None:
        why = model.get("memory_unknown") or "its size could not be read"
        return None, f"memory unknown: {why}"
    total = memory.get("total_bytes")
    if isinstance(total, int) and total > 0:
        return total, ""
    return None, "memory unknown: no total_bytes in its memory estimate"


def models_of(document: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(role, model dict) of the baseline (when the report has one) and every quant."""
    baseline = document.get("baseline")
    models = [("baseline", baseline)] if isinstance(baseline, Mapping) else []
    return models + [("quant", q) for q in document.get("quants", [])]


def points_of(
    document: Mapping[str, Any], damage: Damage
) -> tuple[list[Point], list[dict[str, str]], str]:
    """The report's points in `damage`, the models left out (label, reason), and the memory
    basis."""
    models = models_of(document)
    basis = memory_basis([m for _, m in models])
    points, left_out = [], []
    for role, model in models:
        label = str(model.get("label", "?"))
        memory, why = memory_of(model, basis)
        value = damage.baseline_value if role == "baseline" else _number(model.get(damage.key))
        if memory is None:
            left_out.append({"label": label, "reason": why})
        elif value is None:
            left_out.append({"label": label, "reason": f"no {damage.label} in the report"})
        else:
            interval = None if role == "baseline" else interval_of(model, damage.key)
            bpw = _number(model.get("bits_per_weight"))
            points.append(Point(label, role, memory, value, interval, bpw))
    return points, left_out, basis


def floor_of(document: Mapping[str, Any], damage: Damage) -> dict[str, Any] | None:
    """The noise floor's damage in `damage` (with its interval), or None without one."""
    floor = document.get("floor")
    if not isinstance(floor, Mapping) or _number(floor.get(damage.key)) is None:
        return None
    interval = interval_of(floor, damage.key)
    return {
        "label": str(floor.get("label", "floor")),
        "damage": _number(floor.get(damage.key)),
        "damage_interval": list(interval) if interval else None,
    }


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def dominance_note(placed: Placed, by_label: Mapping[str, Point], damage: Damage) -> str | None:
    """Why a dominated point is beaten, when that is surprising: a smaller quant beating a larger
    one because the baseline was rebuilt from it ("≈ source" in its label), or within noise."""
    if placed.dominated_by is None or placed.point.role != "quant":
        return None
    winner, loser = by_label[placed.dominated_by], placed.point
    if winner.role != "quant":
        return None
    if SOURCE_MARK in winner.label:
        source = winner.label.replace(f"({SOURCE_MARK})", "").strip()
        return (
            f"{loser.label} is dominated by {winner.label}: the baseline was rebuilt by "
            f"dequantizing the {source} release, so its {source} lands back on nearly the same "
            f"weights and looks far better than the {source} of a true F16 would; the order of "
            f"these two says nothing about a true F16"
        )
    if _overlap(loser.damage_interval, winner.damage_interval):
        return (
            f"{loser.label} is dominated by {winner.label}, but their {damage.label} 95% "
            "intervals overlap: the order of the two is within noise"
        )
    return None


def frontier_object(document: Mapping[str, Any], by: str = DEFAULT_BY) -> dict[str, Any]:
    """The report's `frontier` object in damage metric `by` (see the module docstring).

    Raises:
        UsageError: `by` is not a damage metric of the report's mode.
    """
    damage = damage_metric(by, mode_of(document))
    points, left_out, basis = points_of(document, damage)
    placed = place(points)
    by_label = {p.label: p for p in points}
    notes = []
    if basis == "file_size" and points:
        notes.append(
            "memory = file size: the report has no memory estimate, so no KV cache or compute "
            "buffer at any context is counted"
        )
    notes += [n for p in placed if (n := dominance_note(p, by_label, damage)) is not None]
    first_memory = next((m.get("memory") for _, m in models_of(document) if m.get("memory")), None)
    return {
        "by": damage.key,
        "label": damage.label,
        "unit": damage.unit,
        "memory_basis": basis,
        "ctx": first_memory.get("ctx") if first_memory else None,
        "kv_type": first_memory.get("kv_type_k") if first_memory else None,
        "points": [_point_json(p) for p in placed],
        "left_out": left_out,
        "floor": floor_of(document, damage),
        "notes": notes,
    }


def _point_json(placed: Placed) -> dict[str, Any]:
    p = placed.point
    return {
        "label": p.label,
        "role": p.role,
        "memory_bytes": p.memory_bytes,
        "damage": p.damage,
        "damage_interval": list(p.damage_interval) if p.damage_interval else None,
        "bits_per_weight": p.bits_per_weight,
        "on_frontier": placed.on_frontier,
        "dominated_by": placed.dominated_by,
    }
