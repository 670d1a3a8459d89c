"""`ggflip pick`'s engine: saved reports in, the file to run at a memory budget out.

`load_reports` reads reports of any mode and refuses a set whose baselines, or questions or text,
differ (the first difference named in one line); `merged` makes one report of them (the first
report's baseline and floor, every quant once); `at_context` re-estimates every model's memory at
another context or KV type (`ggflip.gguf.memory`); `pick_document` is the `--json` document and
`pick_lines` its text. The choice itself is `ggflip.scoring.pick`, on the frontier of
`ggflip.scoring.frontier`.

The `--json` document (schema `ggflip.pick/1`):

    {"schema": "ggflip.pick/1", "reports": [path], "budget": str (as given), "budget_bytes": int,
     "pick": str,                         # the chosen label
     "chosen": {<frontier point>, "verdict", "verdict_reason", "equivalence"},
     "smaller": null | {<frontier point>}, "larger": null | {<frontier point>},
     "complete": bool,                    # false when a report stopped early
     "frontier": {<the merged reports' frontier object>}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ggflip.errors import DataError, UsageError
from ggflip.gguf import memory
from ggflip.reports.frontier import damage_cell, memory_line, size_text
from ggflip.scoring import frontier as frontier_of
from ggflip.scoring.pick import Choice, choose, smallest
from ggflip.store.documents import read_report

SCHEMA = "ggflip.pick/1"
REPORT_SCHEMAS = ("ggflip.report/1", "ggflip.generate/1", 1)

# What must match for two reports' damage to be comparable, per mode: the questions or text.
SAME_UNITS = {
    "choice": ("task", "source", "prompt_version", "selection", "n_questions", "mode", "n_shots"),
    "corpus": ("text_sha256", "ctx", "n_chunks", "tokens_scored"),
    "generate": (
        "task", "source", "prompt_version", "selection", "n_questions", "max_new_tokens", "chat",
    ),
}


def load_report(path: Path) -> dict[str, Any]:
    """One saved report of any mode.

    Raises:
        DataError: missing, not JSON, or not a ggflip report.
    """
    return read_report(
        path, REPORT_SCHEMAS, "; write one with `ggflip run --out` or `ggflip kld --out`"
    )


def baseline_identity(document: Mapping[str, Any]) -> str:
    """The baseline as a reader can recognise it: its file name and, when known, its size."""
    base = document.get("baseline") or {}
    name = Path(str(base.get("path", "?"))).name
    memory = base.get("memory") or {}
    size = base.get("file_size") or memory.get("weights_bytes")
    return f"{name} ({size} bytes)" if size else name


def check_same(paths: Sequence[Path], documents: Sequence[Mapping[str, Any]]) -> None:
    """Refuse reports that do not share a mode, a baseline and their questions or text.

    Raises:
        DataError: the first difference, naming both reports and both values.
    """
    first, first_path = documents[0], paths[0]
    mode = frontier_of.mode_of(first)
    for path, document in zip(paths[1:], documents[1:]):
        pair = f"{first_path.name} and {path.name}"
        if frontier_of.mode_of(document) != mode:
            other = frontier_of.mode_of(document)
            raise DataError(f"{pair} are reports of different modes: {mode} and {other}")
        if baseline_identity(document) != baseline_identity(first):
            raise DataError(
                f"{pair} have different baselines: {baseline_identity(first)} and "
                f"{baseline_identity(document)}; pick compares files measured against one baseline"
            )
        for key in SAME_UNITS[mode]:
            if first.get(key) != document.get(key):
                raise DataError(
                    f"{pair} differ in {key}: {first.get(key)!r} and {document.get(key)!r}; pick "
                    "compares damage measured on the same questions or text"
                )


def load_reports(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every report, checked to share a mode, baseline and questions or text (`check_same`)."""
    documents = [load_report(path) for path in paths]
    check_same(paths, documents)
    return documents


def merged(paths: Sequence[Path], documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report of all: the first's fields, baseline and floor, every quant of each report
    once (the same label and path once; a label taken by another file gets its report's name)."""
    out = dict(documents[0])
    quants: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for path, document in zip(paths, documents):
        for quant in document.get("quants", []):
            label, file = str(quant.get("label")), str(quant.get("path"))
            if seen.get(label) == file:
                continue
            if label in seen:
                label = f"{label} [{path.name}]"
            seen[label] = file
            quants.append({**quant, "label": label})
    out["quants"] = quants
    out["floor"] = next((d["floor"] for d in documents if d.get("floor")), None)
    out["complete"] = all(d.get("complete", True) for d in documents)
    out.pop("frontier", None)
    return out


def at_context(document: Mapping[str, Any], ctx: int | None, kv_type: str | None) -> dict[str, Any]:
    """The report with every model's memory estimated again at `ctx` and `kv_type` (None: the
    report's own); a model without a memory estimate keeps none.

    Raises:
        UsageError: no model of the report has a memory estimate to start from.
    """
    if not any((m.get("memory") or {}).get("layout") for _, m in frontier_of.models_of(document)):
        raise UsageError(
            "--ctx and --kv-type need the reports' memory estimates, and these reports have none "
            "(written before ggflip recorded memory): run them again, or leave both out to "
            "compare file sizes"
        )
    kv = memory.parse_kv_type(kv_type) if kv_type else None

    def again(model: Mapping[str, Any]) -> dict[str, Any]:
        own = model.get("memory")
        if not own or own.get("layout") is None or own.get("weights_bytes") is None:
            return dict(model)
        estimate = memory.estimate(
            own["weights_bytes"],
            memory.KvLayout.from_json(own["layout"]),
            ctx if ctx is not None else own["ctx"],
            kv or own.get("kv_type_k", "f16"),
            kv or own.get("kv_type_v"),
            bool(own.get("swa_full", False)),
            n_ubatch=int(own.get("n_ubatch", memory.DEFAULT_N_UBATCH)),
        )
        return {**model, "memory": estimate.to_json()}

    out = dict(document)
    if out.get("baseline"):
        out["baseline"] = again(out["baseline"])
    out["quants"] = [again(q) for q in out.get("quants", [])]
    return out


def _model_of(document: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    return next((m for _, m in frontier_of.models_of(document) if m.get("label") == label), {})


def _point(frontier: Mapping[str, Any], label: str | None) -> dict[str, Any] | None:
    return next((dict(p) for p in frontier["points"] if p["label"] == label), None)


def choice_of(frontier: Mapping[str, Any], budget: int) -> Choice | None:
    """The choice at `budget` on a frontier object's points."""
    placed = [
        frontier_of.Placed(
            frontier_of.Point(p["label"], p["role"], p["memory_bytes"], p["damage"]),
            p["dominated_by"],
        )
        for p in frontier["points"]
    ]
    return choose(placed, budget)


def nothing_fits(frontier: Mapping[str, Any], budget: int, text: str = "") -> UsageError:
    """The one-line refusal of a budget below every file's need."""
    placed = [
        frontier_of.Placed(frontier_of.Point(p["label"], p["role"], p["memory_bytes"], 0.0), None)
        for p in frontier["points"]
    ]
    least = smallest(placed)
    if least is None:
        why = "; ".join(f"{m['label']}: {m['reason']}" for m in frontier["left_out"])
        return UsageError(f"no file with a known memory and damage in the reports ({why})")
    return UsageError(
        f"--budget {text or size_text(budget)}: nothing fits; the smallest file, "
        f"{least.point.label}, needs {size_text(least.point.memory_bytes)} "
        f"({memory_line(frontier, short=True)})"
    )


def pick_document(
    paths: Sequence[Path], document: Mapping[str, Any], budget: int, by: str, budget_text: str = ""
) -> dict[str, Any]:
    """The `--json` document of a pick (see the module docstring).

    Raises:
        UsageError: nothing fits the budget (naming the smallest file and its need), or `by` is
            not a damage metric of the reports' mode.
    """
    frontier = frontier_of.frontier_object(document, by)
    choice = choice_of(frontier, budget)
    if choice is None:
        raise nothing_fits(frontier, budget, budget_text)
    label = choice.chosen.point.label
    model = _model_of(document, label)
    chosen = _point(frontier, label) or {}
    chosen.update(
        verdict=model.get("verdict"),
        verdict_reason=model.get("verdict_reason"),
        equivalence=model.get("equivalence"),
    )
    return {
        "schema": SCHEMA,
        "reports": [str(path) for path in paths],
        "budget": budget_text or f"{budget}B",
        "budget_bytes": budget,
        "pick": label,
        "chosen": chosen,
        "smaller": _point(frontier, choice.smaller.point.label) if choice.smaller else None,
        "larger": _point(frontier, choice.larger.point.label) if choice.larger else None,
        "complete": document.get("complete", True),
        "frontier": frontier,
    }


def _times(damage: float, than: float) -> str:
    if than <= 0 or damage <= 0:
        return ""
    ratio = damage / than
    return f", {ratio:.3g}× the damage" if ratio >= 1 else f", {1 / ratio:.3g}× less damage"


def equivalence_text(chosen: Mapping[str, Any]) -> str:
    """Whether the chosen file is as good as the baseline, as the report can say it."""
    if chosen["role"] == "baseline":
        return "it is the baseline itself"
    equivalence = chosen.get("equivalence")
    if isinstance(equivalence, Mapping) and equivalence.get("verdict"):
        reason = equivalence.get("reason") or equivalence.get("verdict_reason")
        return f"equivalence: {equivalence['verdict']}" + (f" ({reason})" if reason else "")
    verdict = chosen.get("verdict")
    reason = f": {chosen['verdict_reason']}" if chosen.get("verdict_reason") else ""
    if verdict == "indistinguishable":
        return f"not measurably different from the baseline (within its noise floor{reason})"
    if verdict == "different":
        return f"measurably different from the baseline (beyond its noise floor{reason})"
    if verdict:
        return f"verdict against the noise floor: {verdict}{reason}"
    return "no verdict against the baseline in the report (run with --floor)"


def pick_lines(result: Mapping[str, Any], cell: Callable[[float | None], str]) -> list[str]:
    """The pick as lines of text: the choice and its numbers, its neighbours, the notes."""
    frontier, chosen = result["frontier"], result["chosen"]
    metric = frontier["label"]

    def numbers(point: Mapping[str, Any]) -> str:
        size = size_text(point["memory_bytes"])
        return f"{point['label']}: {size}, {metric} {cell(point['damage'])}"

    lines = [
        f"Budget {result['budget']} ({result['budget_bytes']:,} bytes); {memory_line(frontier)}",
        f"Pick {numbers(chosen)}; {equivalence_text(chosen)}.",
    ]
    if result["smaller"]:
        smaller = result["smaller"]
        saves = chosen["memory_bytes"] - smaller["memory_bytes"]
        lines.append(
            f"  next smaller: {numbers(smaller)} (saves {size_text(saves)}"
            f"{_times(smaller['damage'], chosen['damage'])})"
        )
    if result["larger"]:
        larger = result["larger"]
        over = larger["memory_bytes"] - result["budget_bytes"]
        lines.append(
            f"  next larger:  {numbers(larger)} ({size_text(over)} over the budget"
            f"{_times(larger['damage'], chosen['damage'])})"
        )
    shown = {chosen["label"]} | {p["label"] for p in (result["smaller"], result["larger"]) if p}
    fits = {p["label"] for p in frontier["points"] if p["memory_bytes"] <= result["budget_bytes"]}
    lines += [
        f"  note: {note}." for note in frontier["notes"]
        if any(note.startswith(label) or f" {label}" in note for label in shown | fits)
        and not note.startswith("memory = file size")
    ]
    if not result.get("complete", True):
        lines.append("  note: a report stopped early; only the quants it finished are compared.")
    return lines + [f"  left out: {m['label']}: {m['reason']}." for m in frontier["left_out"]]


def damage_formatter(result: Mapping[str, Any]) -> Callable[[float | None], str]:
    """The cell format of the pick's damage metric."""
    return lambda value: damage_cell(result["frontier"], value)
