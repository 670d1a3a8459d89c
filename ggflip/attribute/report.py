"""An attribution's result (`AttributionReport`) and its JSON document.

JSON schema (`to_json`, `schema` = SCHEMA):
    {"schema", "baseline", "quant", "source", "by", "measure": {"mode", ...},
     "quant_figures": {"kl_mean", ...}, "file_bytes": {"baseline", "quant", "source"},
     "tensor_bytes": {"baseline", "quant", "source"},
     "groups": [{"name", "regex", "n_tensors", "bytes": {FILE: n}, "types": {FILE: {TYPE: n}},
                 "extra_bytes", "damage": {"kl_mean", ...}, "recovery": {"kl_mean", ...},
                 "damage_kl", "recovery_kl", "recovered_kl", "recovered_per_mib"}],  ranked
     "additivity": {"quant_kl", "sum_damage_kl", "damage_ratio", "sum_recovered_kl",
                    "recovered_ratio"},
     "recipe": null | {"budget_bytes", "method", "groups", "extra_bytes", "file_bytes",
                       "predicted_kl", "tensor_types": [[REGEX, TYPE]], "llama_quantize",
                       "ggflip"},
     "verify": [{"label", "path", "file_bytes", "figures": {...}}], "complete"}

Groups are ranked by KL recovered per extra byte (most first; a group whose raising costs no
bytes first of all, one that recovers nothing last). The additivity compares the sum of the
groups' single damages with the whole quant's KL: a ratio near 1 means the damages add up; below
1, groups hurt more together than alone; above, they partly cancel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ggflip.store.documents import finite

SCHEMA = "ggflip.attribute/1"
MIB = 1 << 20


@dataclass(frozen=True)
class GroupResult:
    """One group's bytes and its two measurements."""

    name: str
    regex: str
    n_tensors: int
    bytes: dict[str, int]
    types: dict[str, dict[str, int]]
    damage: dict[str, float]
    recovery: dict[str, float]
    quant_kl: float

    @property
    def extra_bytes(self) -> int:
        return self.bytes["source"] - self.bytes["quant"]

    @property
    def damage_kl(self) -> float:
        return self.damage.get("kl_mean", math.nan)

    @property
    def recovery_kl(self) -> float:
        return self.recovery.get("kl_mean", math.nan)

    @property
    def recovered_kl(self) -> float:
        """The quant's KL less its KL with this group restored."""
        return self.quant_kl - self.recovery_kl

    @property
    def recovered_per_mib(self) -> float:
        if self.extra_bytes <= 0:
            return math.inf if self.recovered_kl > 0 else 0.0
        return self.recovered_kl / (self.extra_bytes / MIB)

    def to_dict(self) -> dict[str, Any]:
        return finite(
            {
                "name": self.name,
                "regex": self.regex,
                "n_tensors": self.n_tensors,
                "bytes": self.bytes,
                "types": self.types,
                "extra_bytes": self.extra_bytes,
                "damage": self.damage,
                "recovery": self.recovery,
                "damage_kl": self.damage_kl,
                "recovery_kl": self.recovery_kl,
                "recovered_kl": self.recovered_kl,
                "recovered_per_mib": self.recovered_per_mib,
            }
        )


def ranked(groups: list[GroupResult]) -> list[GroupResult]:
    """Most KL recovered per extra byte first; ties by name."""

    def key(group: GroupResult) -> tuple[float, str]:
        value = group.recovered_per_mib
        return (-(value if not math.isnan(value) else -math.inf), group.name)

    return sorted(groups, key=key)


@dataclass(frozen=True)
class RecipeResult:
    """The groups a budget raises, what they cost and the KL predicted for them."""

    budget_bytes: int
    method: str  # "greedy" (by recovery per byte) or "exhaustive" (every subset, better here)
    groups: tuple[str, ...]
    extra_bytes: int
    file_bytes: int
    predicted_kl: float
    tensor_types: tuple[tuple[str, str], ...]
    llama_quantize: str
    ggflip: str

    def to_dict(self) -> dict[str, Any]:
        return finite(
            {
                "budget_bytes": self.budget_bytes,
                "method": self.method,
                "groups": list(self.groups),
                "extra_bytes": self.extra_bytes,
                "file_bytes": self.file_bytes,
                "predicted_kl": self.predicted_kl,
                "tensor_types": [list(pair) for pair in self.tensor_types],
                "llama_quantize": self.llama_quantize,
                "ggflip": self.ggflip,
            }
        )


@dataclass(frozen=True)
class VerifyRow:
    """One model measured on the held-out text: the recipe's, the quant, a uniform quant."""

    label: str
    path: str
    file_bytes: int
    figures: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return finite(
            {
                "label": self.label,
                "path": self.path,
                "file_bytes": self.file_bytes,
                "figures": self.figures,
            }
        )


@dataclass(frozen=True)
class AttributionReport:
    """Everything an attribution found, groups ranked."""

    baseline: str
    quant: str
    source: str
    by: str
    measure: dict[str, Any]
    quant_figures: dict[str, float]
    file_bytes: dict[str, int]
    tensor_bytes: dict[str, int]
    groups: tuple[GroupResult, ...]
    recipe: RecipeResult | None = None
    verify: tuple[VerifyRow, ...] = ()
    verify_measure: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    @property
    def quant_kl(self) -> float:
        return self.quant_figures.get("kl_mean", math.nan)

    def additivity(self) -> dict[str, float]:
        """The sum of single-group damages (and recoveries) against the whole quant's KL."""
        damage = sum(g.damage_kl for g in self.groups)
        recovered = sum(g.recovered_kl for g in self.groups)
        quant = self.quant_kl
        return {
            "quant_kl": quant,
            "sum_damage_kl": damage,
            "damage_ratio": damage / quant if quant > 0 else math.nan,
            "sum_recovered_kl": recovered,
            "recovered_ratio": recovered / quant if quant > 0 else math.nan,
        }

    def to_json(self) -> dict[str, Any]:
        return finite(
            {
                "schema": SCHEMA,
                "baseline": self.baseline,
                "quant": self.quant,
                "source": self.source,
                "by": self.by,
                "measure": self.measure,
                "quant_figures": self.quant_figures,
                "file_bytes": self.file_bytes,
                "tensor_bytes": self.tensor_bytes,
                "groups": [group.to_dict() for group in self.groups],
                "additivity": self.additivity(),
                "recipe": self.recipe.to_dict() if self.recipe else None,
                "verify_measure": self.verify_measure,
                "verify": [row.to_dict() for row in self.verify],
                "complete": self.complete,
            }
        )
