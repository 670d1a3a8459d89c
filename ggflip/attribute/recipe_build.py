"""From measured figures to the report: each group's result, the ranking and the recipe.

A group whose hybrid was not measured because it is the file it stands for (its tensors stored
identically in the baseline and the quant, or in the source and the quant) gets the figures it
is known to have: a damage of 0, a recovery equal to the quant.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from ggflip.attribute.measure import Figures
from ggflip.attribute.plan import FILES, QUANT, SOURCE, GroupPlan, Hybrid, swapped
from ggflip.attribute.recipe import Candidate, choose, parse_budget, quantize_command
from ggflip.attribute.report import AttributionReport, GroupResult, RecipeResult, ranked
from ggflip.attribute.spec import AttributeSpec
from ggflip.gguf.header import file_type_name, scan_gguf
from ggflip.gguf.splice import TensorRow

_ZERO = {"kl_mean": 0.0, "flips": 0.0, "n_flips": 0.0}


def _result(plan: GroupPlan, quant: Figures, figures: Mapping[str, Figures]) -> GroupResult:
    name = plan.group.name
    damage = figures.get(f"damage {name}")
    recovery = figures.get(f"recovery {name}")
    if damage is None:
        damage = {k: v for k, v in _ZERO.items() if k in quant} if plan.damage_same else {}
    if recovery is None:
        recovery = dict(quant) if plan.recovery_same else {}
    return GroupResult(
        name=name,
        regex=plan.group.regex,
        n_tensors=len(plan.group.tensors),
        bytes=dict(zip(FILES, plan.n_bytes)),
        types=dict(zip(FILES, plan.types)),
        damage=damage,
        recovery=recovery,
        quant_kl=quant.get("kl_mean", float("nan")),
    )


def _quant_type(path: Path) -> str:
    """The quant's llama file type ("Q2_K"), as llama-quantize takes it."""
    fields = scan_gguf(path, lambda key: key == "general.file_type").fields
    return file_type_name(fields.get("general.file_type"))


def _ggflip_command(spec: AttributeSpec) -> str:
    """The `ggflip attribute` command that writes this recipe's model by splicing."""
    args = ["ggflip", "attribute", "--baseline", str(spec.baseline), "--quant", str(spec.quant)]
    if spec.source:
        args += ["--source", str(spec.source)]
    args += ["--by", spec.by, *(a for p in spec.patterns for a in ("--group", p))]
    described = spec.measure.describe()
    for text in described.get("texts", ()):
        args += ["--text", text]
    if described.get("chunks"):
        args += ["--ctx", str(described["ctx"]), "--chunks", str(described["chunks"])]
    if "task" in described:
        args += ["--task", str(described["task"]), "--limit", str(described["n"])]
    return shlex.join([*args, "--recipe-budget", spec.budget or "", "--write-recipe", "R.gguf"])


def _recipe(
    spec: AttributeSpec, plans: Sequence[GroupPlan], groups: Sequence[GroupResult], quant_kl: float
) -> RecipeResult | None:
    if spec.budget is None:
        return None
    quant_bytes = spec.quant.stat().st_size
    budget = parse_budget(spec.budget, quant_bytes)
    candidates = [Candidate(g.name, g.extra_bytes, g.recovered_kl) for g in groups]
    chosen, method = choose(candidates, budget)
    names = [c.name for c in chosen]
    raises = [plan.raise_to for plan in plans if plan.group.name in names]
    extra = sum(c.extra_bytes for c in chosen)
    return RecipeResult(
        budget_bytes=budget,
        method=method,
        groups=tuple(names),
        extra_bytes=extra,
        file_bytes=quant_bytes + extra,
        predicted_kl=quant_kl - sum(c.recovered for c in chosen),
        tensor_types=tuple(pair for item in raises for pair in item.tensor_types),
        llama_quantize=quantize_command(
            raises, str(spec.baseline), "recipe.gguf", _quant_type(spec.quant)
        ),
        ggflip=_ggflip_command(spec),
    )


def build_report(
    spec: AttributeSpec,
    rows: Sequence[TensorRow],
    plans: Sequence[GroupPlan],
    quant: Figures,
    figures: Mapping[str, Figures],
) -> AttributionReport:
    """The groups' results ranked, their bytes, and the recipe for `spec.budget`."""
    groups = ranked([_result(plan, quant, figures) for plan in plans])
    files = spec.files
    return AttributionReport(
        baseline=str(spec.baseline),
        quant=str(spec.quant),
        source=str(files[SOURCE]),
        by=spec.by if not spec.patterns else "group",
        measure=spec.measure.describe(),
        quant_figures=dict(quant),
        file_bytes={name: files[i].stat().st_size for i, name in enumerate(FILES)},
        tensor_bytes={name: sum(r.n_bytes[i] for r in rows) for i, name in enumerate(FILES)},
        groups=tuple(groups),
        recipe=_recipe(spec, plans, groups, quant.get("kl_mean", float("nan"))),
    )


def recipe_hybrid(
    rows: Sequence[TensorRow], plans: Sequence[GroupPlan], report: AttributionReport
) -> Hybrid:
    """The recipe's model: the quant with the chosen groups from the source."""
    assert report.recipe is not None
    chosen = set(report.recipe.groups)
    names = frozenset(n for plan in plans if plan.group.name in chosen for n in plan.group.tensors)
    sources = swapped(rows, names, SOURCE, QUANT)
    return Hybrid("recipe", "+".join(sorted(chosen)), "recipe", sources)
