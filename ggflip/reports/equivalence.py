"""The equivalence table every mode's report shows: per quant, the verdict in words and each
criterion's estimate, 90 % interval and verdict against its margin (`ggflip.scoring.criteria`).

Declared once as a `Table` and written by `ggflip.reports.tables`' writers, like every table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ggflip.reports.tables import Table, value_of
from ggflip.scoring.equivalence import UNDECIDED, margin_text
from ggflip.scoring.formats import DASH, sig

CRITERIA = (("accuracy", "Δacc"), ("flips", "flips"), ("kl_mean", "KL mean"))


def verdict_text(equivalence: Mapping[str, Any] | None) -> str:
    """The overall verdict in words: "equivalent", "different", "undecided — about 228 more
    questions would decide"."""
    if not equivalence:
        return DASH
    verdict = str(equivalence["verdict"])
    if verdict != UNDECIDED:
        return verdict
    n_more = equivalence.get("n_more")
    units = {c["unit"] for c in equivalence.get("criteria", {}).values()}
    unit = units.pop() if len(units) == 1 else "units"
    if n_more is None:
        stuck = [
            dict(CRITERIA).get(name, name)
            for name, c in equivalence.get("criteria", {}).items()
            if c["verdict"] == UNDECIDED and c.get("n_more") is None
        ]
        return f"{verdict} — {', '.join(stuck) or 'an estimate'} on its margin: no n decides"
    return f"{verdict} — about {n_more:,} more {unit} would decide"


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return DASH
    if metric == "delta_accuracy":
        return f"{100 * value:+.1f}"
    if metric == "flips":
        return f"{100 * value:.1f}%"
    return sig(value)


def criterion_cell(criterion: Mapping[str, Any] | None) -> str:
    """"-0.3 [-1.2, 0.6] undecided": the estimate, its 90 % interval and the verdict."""
    if not criterion:
        return DASH
    metric = criterion["metric"]
    low, high = criterion["ci"]
    interval = f"[{_value(metric, low)}, {_value(metric, high)}]"
    return f"{_value(metric, criterion['estimate'])} {interval} {criterion['verdict']}"


def equivalence_table(items: Iterable[Any], title: str = "") -> Table | None:
    """One row per quant with an equivalence object (JSON dicts or summaries); None when none
    has one. The headers carry each criterion's margin."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for item in items:
        found = value_of(item, "equivalence")
        if found:
            rows.append((str(value_of(item, "label")), found))
    if not rows:
        return None
    present = [(name, short) for name, short in CRITERIA if name in rows[0][1]["criteria"]]
    header = ["model", "equivalence"]
    for name, short in present:
        criterion = rows[0][1]["criteria"][name]
        header.append(f"{short} ({margin_text(criterion['metric'], criterion['margin'])})")
    body = [
        [label, verdict_text(found)]
        + [criterion_cell(found["criteria"].get(name)) for name, _ in present]
        for label, found in rows
    ]
    return Table(title or "Equivalence to the baseline (90 % intervals)", header, body)
