"""What an attribution measures: the groups, their bytes in each file, and the hybrids.

Files are numbered as `FILES` names them: 0 the baseline, 1 the quant, 2 the source a recovery
takes its tensors from (the baseline itself unless `--source` names another file). For each
group the plan holds two hybrids: its **damage** (the baseline with that group's tensors from the
quant) and its **recovery** (the quant with that group from the source). A hybrid whose tensors
are all stored identically in the file it stands for is not measured: its KL is known (0 for a
damage, the quant's for a recovery). A hybrid's metadata is that of the file it takes most
tensors from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ggflip.attribute.groups import Group, block_numbers, exact_regex
from ggflip.attribute.recipe import Raise
from ggflip.gguf.splice import TensorRow

BASELINE, QUANT, SOURCE = 0, 1, 2
FILES = ("baseline", "quant", "source")


@dataclass(frozen=True)
class GroupPlan:
    """One group: its tensors' bytes and types in each file, and which of its hybrids are the
    file they stand for already (`damage_same`: baseline = quant on these tensors;
    `recovery_same`: source = quant)."""

    group: Group
    n_bytes: tuple[int, ...]
    types: tuple[dict[str, int], ...]
    damage_same: bool
    recovery_same: bool
    raise_to: Raise

    @property
    def extra_bytes(self) -> int:
        """Bytes the group costs over the quant when raised to the source's types."""
        return self.n_bytes[SOURCE] - self.n_bytes[QUANT]


@dataclass(frozen=True)
class Hybrid:
    """One model to measure: `sources[i]` is the file tensor i (in the baseline's order) comes
    from; `base` the file whose metadata it carries."""

    label: str
    group: str
    kind: str  # "damage", "recovery", "recipe"
    sources: tuple[int, ...]

    @property
    def base(self) -> int:
        counts = Counter(self.sources)
        return max(sorted(counts), key=lambda index: counts[index])


def _type_counts(rows: Sequence[TensorRow], index: int) -> dict[str, int]:
    return dict(Counter(row.types[index] for row in rows))


def _raise(group: Group, rows: Sequence[TensorRow], blocks: frozenset[int]) -> Raise:
    """The group's tensors at their source types, one regex per type."""
    by_type: dict[str, list[str]] = {}
    for row in rows:
        if row.types[SOURCE] != row.types[QUANT]:
            by_type.setdefault(row.types[SOURCE], []).append(row.name)
    if len(by_type) == 1 and sum(map(len, by_type.values())) == len(group.tensors):
        return Raise(group.name, ((group.regex, next(iter(by_type))),))
    return Raise(
        group.name,
        tuple((exact_regex(names, blocks), kind) for kind, names in by_type.items()),
    )


def plan_groups(
    rows: Sequence[TensorRow],
    groups: Sequence[Group],
    same_as_quant: Sequence[frozenset[str]],
) -> tuple[GroupPlan, ...]:
    """Each group's bytes and types per file; `same_as_quant[f]` the tensors file f stores
    exactly as the quant does."""
    by_name = {row.name: row for row in rows}
    blocks = block_numbers(list(by_name))
    plans = []
    for group in groups:
        members = [by_name[name] for name in group.tensors]
        plans.append(
            GroupPlan(
                group,
                tuple(sum(row.n_bytes[i] for row in members) for i in range(len(FILES))),
                tuple(_type_counts(members, i) for i in range(len(FILES))),
                set(group.tensors) <= same_as_quant[BASELINE],
                set(group.tensors) <= same_as_quant[SOURCE],
                _raise(group, members, blocks),
            )
        )
    return tuple(plans)


def swapped(
    rows: Sequence[TensorRow], names: frozenset[str], inside: int, outside: int
) -> tuple[int, ...]:
    """Sources of a hybrid: file `inside` for the tensors `names`, file `outside` for the rest."""
    return tuple(inside if row.name in names else outside for row in rows)


def hybrids(rows: Sequence[TensorRow], plans: Sequence[GroupPlan]) -> tuple[Hybrid, ...]:
    """The hybrids to measure, damages first (in group order), then recoveries."""
    damages, recoveries = [], []
    for plan in plans:
        names = frozenset(plan.group.tensors)
        if not plan.damage_same:
            sources = swapped(rows, names, QUANT, BASELINE)
            damages.append(Hybrid(f"damage {plan.group.name}", plan.group.name, "damage", sources))
        if not plan.recovery_same:
            sources = swapped(rows, names, SOURCE, QUANT)
            recoveries.append(
                Hybrid(f"recovery {plan.group.name}", plan.group.name, "recovery", sources)
            )
    return (*damages, *recoveries)
