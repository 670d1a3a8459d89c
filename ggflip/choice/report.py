"""The report of a run: the one typed definition of the `--json` document (schema
`ggflip.report/1`).

All rates are fractions in [0, 1], never percent. Intervals are `[low, high]` pairs.

    {
      "schema": "ggflip.report/1", "ggflip_version": str,
      "set": str, "task": str, "prompt_version": str, "source": str,
      "n_questions": int, "selection": str, "skipped_rows": [{"where": str, "reason": str}],
      "cache_top_k": int, "complete": bool,
      "skipped_questions": [{"index": int, "id": str, "label": str, "reason": str}],
      "mode": "letter" | "cloze", "answer_rule": "sum" | "norm" | null, "n_shots": int,
      "baseline": {"label", "path", "accuracy", "accuracy_ci", "seconds", "from_cache",
                   "bits_per_weight", "file_size", "n_params", "memory", "memory_unknown",
                   "computed_with": {"llama", "build", "batch_size", "grouped_by"?,
                                     "prefix_reuse", "tail_samples"}},
      "quants": [ {
          "label", "path", "n", "seconds", "questions_per_second",
          "bits_per_weight", "file_size", "n_params", "memory", "memory_unknown",
          "settings": {name: value},
          "imatrix": {"file", "dataset", "chunks_count", "entries_count"} (those present),
          "accuracy", "accuracy_ci", "baseline_accuracy", "delta_accuracy",
          "flips", "flips_lost", "flips_gained", "n_flips_lost", "n_flips_gained",
          "answer_changes", "mcnemar_p",
          "kl_mean", "kl_mean_ci", "kl_median", "kl_p90", "kl_p99", "kl_max",
          "kl_options_mean", "same_top",
          "margin_buckets": [{"lo", "hi", "n", "flips", "flip_rate"}],
          "acceptance_mean", "acceptance_p10",
          "by_subject": [{"name", "n", "flips", "flip_rate", "flip_rate_ci", "changes",
                          "answer_changes", "kl_mean", "acceptance_mean"}],
          "confidence_buckets": [{"lo", "hi", <the fields of by_subject but "name">}],
          "verdict", "verdict_reason", "floor_flips_p", "floor_kl_p", "kl_mean_over_floor",
          "floor_flips_log10_p", "floor_kl_log10_p",
          "equivalence": {"verdict", "n_more", "criteria": {...}} (`ggflip.scoring.criteria`),
          "by_rule": {} | {"sum": {"baseline_accuracy", "accuracy", "flips"}, "norm": {...}},
          "kl_mean_lower_bound",
          <each registered metric of multiple choice that is not a field above, by name>,
          "rows": [ {"index", "id", "subject", "gold", "base_choice", "base_probs",
                     "quant_choice", "quant_probs", "flip", "changed", "kl",
                     "kl_options", "same_top", "top_margin", "n_tokens",
                     "base_sums", "base_norms", "quant_sums", "quant_norms",
                     "kl_lower_bound", "acceptance"} ]
      } ],
      "floor": null | {<the fields of a quant>}, "floor_method": null | str,
      "frontier": {<ggflip.scoring.frontier.frontier_object: memory against mean KL>},
      "calibration": [{"file", "n_windows", "overlapping", "share", "warn"}]
    }

`flip` is "correct_to_incorrect", "incorrect_to_correct" or null; answers are option indexes
(0 = A). `kl` is KL(baseline || quant) over the full vocabulary at the answer position
(cloze: averaged over every scored continuation token of every choice, `n_tokens` of them), as
the baseline's compact record estimates it: `kl_lower_bound` (top K + merged tail, never above
the exact KL) plus the sampled tail estimate (`ggflip.scoring.topk`). `computed_with` holds the
llama settings and build that key the baseline cache (`ggflip.backends.numerics`), the questions
per llama.cpp call, and `grouped_by: "length"` where the calls group questions by prompt length
(runs whose prompts share no prefix: `ggflip.choice.loop._groups`).
Cloze rows carry each choice's summed and per-character log-likelihoods; letter rows leave
those lists empty. `answer_rule` names which of the two picks the cloze answer; `base_probs`,
`quant_probs`, `top_margin` and `kl_options` are the options' sequence probabilities renormalized
over the options (cloze: a softmax of the sums, under either rule).
`selection` says which questions `--limit` took ("30 of 14042 questions, stratified by subject
(seed 0; ...)", "the first 30 ...", "all 40 questions").
`bits_per_weight` (tensor data bits over weights, as llama.cpp prints it; null when unknown),
`file_size` (bytes, all parts of a split GGUF) and `n_params` (weights) describe the model file;
`memory` is its weights + KV cache at the run's context (`ggflip.gguf.memory.Memory.to_json`;
null, with `memory_unknown` saying why, when the file's cache cannot be sized).
`acceptance` is the expected acceptance rate Σ min(p, q) (exact over the cached top K, the tail's
share estimated from the tail draws, `ggflip.scoring.acceptance`); `floor` is the baseline scored
again under another decode grouping (`floor_method`), against which each quant's `verdict` is
taken (`ggflip.scoring.floor`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ggflip import __version__
from ggflip.choice.answers import QuestionRow, paired_arrays
from ggflip.scoring import frontier, groups, metrics, stats
from ggflip.store.documents import finite, to_json
from ggflip.tasks.calibration import CalibrationOverlap
from ggflip.tasks.questions import SkippedRow

SCHEMA = "ggflip.report/1"
MODE = "choice"


@dataclass(frozen=True)
class SkippedQuestion:
    """A question a model could not score (its prompt does not fit n_ctx), left out of every
    pair."""

    index: int
    id: str
    label: str
    reason: str


@dataclass(frozen=True)
class BaselineSummary:
    """The baseline's own accuracy and cost."""

    label: str
    path: str
    accuracy: float
    accuracy_ci: tuple[float, float]
    seconds: float
    from_cache: bool
    bits_per_weight: float = math.nan
    file_size: int = 0
    n_params: int = 0
    imatrix: dict[str, Any] = field(default_factory=dict)  # the GGUF's imatrix provenance
    computed_with: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    memory_unknown: str | None = None


@dataclass(frozen=True)
class QuantSummary:
    """Every summary metric of one quant against the baseline, and its per-question rows."""

    label: str
    path: str
    n: int
    seconds: float
    questions_per_second: float
    accuracy: float
    accuracy_ci: tuple[float, float]
    baseline_accuracy: float
    delta_accuracy: float
    flips: float
    flips_lost: float
    flips_gained: float
    n_flips_lost: int
    n_flips_gained: int
    answer_changes: float
    mcnemar_p: float
    kl_mean: float
    kl_mean_ci: tuple[float, float]
    kl_median: float
    kl_p90: float
    kl_p99: float
    kl_max: float
    kl_options_mean: float
    same_top: float
    margin_buckets: list[dict[str, float | int]]
    rows: Sequence[QuestionRow] = field(repr=False)
    bits_per_weight: float = math.nan
    file_size: int = 0
    n_params: int = 0
    memory: dict[str, Any] | None = None
    memory_unknown: str | None = None
    by_rule: dict[str, dict[str, float]] = field(default_factory=dict)
    kl_mean_lower_bound: float = math.nan
    acceptance_mean: float = math.nan
    acceptance_p10: float = math.nan
    by_subject: list[dict[str, Any]] = field(default_factory=list)
    confidence_buckets: list[dict[str, Any]] = field(default_factory=list)
    verdict: str | None = None
    verdict_reason: str = ""
    floor_flips_p: float = math.nan
    floor_kl_p: float = math.nan
    kl_mean_over_floor: float = math.nan
    # log10 of the two p-values: finite where a p-value underflows to 0.0 at large n
    floor_flips_log10_p: float = math.nan
    floor_kl_log10_p: float = math.nan
    equivalence: dict[str, Any] | None = None  # ggflip.scoring.criteria's object
    settings: dict[str, Any] = field(default_factory=dict)  # llama settings unlike the baseline's
    imatrix: dict[str, Any] = field(default_factory=dict)  # the GGUF's imatrix provenance
    extra: dict[str, float] = field(default_factory=dict)  # registered metrics beyond these fields


QUANT_FIELDS = frozenset(f.name for f in dataclasses.fields(QuantSummary))


def summarize_quant(
    label: str, path: str, rows: Sequence[QuestionRow], seconds: float
) -> QuantSummary:
    """Fold a quant's comparison rows into its summary with the registered metrics."""
    arrays = paired_arrays(rows)
    values = metrics.compute(MODE, arrays)
    n = len(rows)
    return QuantSummary(
        label=label,
        path=path,
        n=n,
        seconds=seconds,
        questions_per_second=n / seconds if seconds > 0 else math.nan,
        accuracy=values["accuracy"],
        accuracy_ci=stats.wilson_interval(int(arrays.quant_correct.sum()), n),
        baseline_accuracy=values["baseline_accuracy"],
        delta_accuracy=values["delta_accuracy"],
        flips=values["flips"],
        flips_lost=values["flips_lost"],
        flips_gained=values["flips_gained"],
        n_flips_lost=int(arrays.lost.sum()),
        n_flips_gained=int(arrays.gained.sum()),
        answer_changes=values["answer_changes"],
        mcnemar_p=values["mcnemar_p"],
        kl_mean=values["kl_mean"],
        kl_mean_ci=stats.mean_interval(arrays.kl),
        kl_mean_lower_bound=values["kl_mean_lower_bound"],
        kl_median=values["kl_median"],
        kl_p90=values["kl_p90"],
        kl_p99=values["kl_p99"],
        kl_max=values["kl_max"],
        kl_options_mean=values["kl_options_mean"],
        same_top=values["same_top"],
        margin_buckets=stats.margin_buckets(arrays.top_margin, arrays.lost | arrays.gained),
        rows=tuple(rows),
        by_rule=_by_rule(rows),
        acceptance_mean=values["acceptance_mean"],
        acceptance_p10=values["acceptance_p10"],
        by_subject=by_subject(rows),
        confidence_buckets=confidence_buckets(rows),
        extra={k: v for k, v in values.items() if k not in QUANT_FIELDS},
    )


def _damage(rows: Sequence[QuestionRow]) -> tuple[list[bool], list[bool], list[float], list[float]]:
    return (
        [r.flip is not None for r in rows],
        [r.changed for r in rows],
        [r.kl for r in rows],
        [r.acceptance for r in rows],
    )


def by_subject(rows: Sequence[QuestionRow]) -> list[dict[str, Any]]:
    """Flips, answer changes, KL and acceptance per subject, the most damaged first."""
    return groups.by_group([r.subject for r in rows], *_damage(rows))


def confidence_buckets(rows: Sequence[QuestionRow]) -> list[dict[str, Any]]:
    """The same per bucket of the baseline's confidence (its top option probability)."""
    return groups.by_bucket([r.confidence for r in rows], *_damage(rows))


def _by_rule(rows: Sequence[QuestionRow]) -> dict[str, dict[str, float]]:
    """Cloze only: accuracy and flips under each answer rule ("sum" and "norm"), whichever is the
    answer."""
    if not rows or not rows[0].base_sums:
        return {}
    out: dict[str, dict[str, float]] = {}
    gold = np.array([r.gold for r in rows])
    for rule, base_of, quant_of in (
        ("sum", "base_sums", "quant_sums"),
        ("norm", "base_norms", "quant_norms"),
    ):
        base_ok = np.array([int(np.argmax(getattr(r, base_of))) for r in rows]) == gold
        quant_ok = np.array([int(np.argmax(getattr(r, quant_of))) for r in rows]) == gold
        out[rule] = {
            "baseline_accuracy": float(base_ok.mean()),
            "accuracy": float(quant_ok.mean()),
            "flips": float((base_ok != quant_ok).mean()),
        }
    return out


@dataclass(frozen=True)
class Report:
    """A whole run; `complete` is False when the run stopped early (cancel, error)."""

    set: str
    task: str
    prompt_version: str
    source: str
    n_questions: int
    skipped_rows: Sequence[SkippedRow]
    cache_top_k: int
    baseline: BaselineSummary | None
    quants: Sequence[QuantSummary]
    complete: bool = True
    skipped_questions: Sequence[SkippedQuestion] = ()
    mode: str = "letter"
    answer_rule: str | None = None
    n_shots: int = 0
    floor: QuantSummary | None = None
    floor_method: str | None = None
    selection: str = ""
    calibration: Sequence[CalibrationOverlap] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as plain Python values (non-finite floats become null)."""
        document = {
            "schema": SCHEMA,
            "ggflip_version": __version__,
            **finite(dataclasses.asdict(self)),
        }
        summaries = [*zip(document["quants"], self.quants)]
        if self.floor is not None:
            summaries.append((document["floor"], self.floor))
        for quant, summary in summaries:
            for row_dict, row in zip(quant["rows"], summary.rows):
                row_dict["changed"] = row.changed
        document["quants"] = [_flat(quant) for quant in document["quants"]]
        if document["floor"] is not None:
            document["floor"] = _flat(document["floor"])
        for model in [document["baseline"], *document["quants"], document["floor"]]:
            if model and model.get("memory") is None and model.get("memory_unknown") is None:
                # read from a report saved before ggflip recorded memory: keep it that way, so
                # the frontier goes by file size and says so
                model.pop("memory", None), model.pop("memory_unknown", None)
        document["frontier"] = frontier.frontier_object(document)
        return document

    def to_json(self, indent: int | None = 1) -> str:
        return to_json(self.to_dict(), indent=indent)


def _flat(quant: dict[str, Any]) -> dict[str, Any]:
    """A quant's JSON dict with its extra metrics as keys of their own, after the typed ones."""
    return metrics.with_extra(quant, quant.pop("extra"), before=None)


def _fields_of(cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that are fields of dataclass `cls`; null floats become nan, lists
    tuples."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in kinds:
            continue
        if value is None and kinds[key].startswith("float"):
            value = math.nan
        elif isinstance(value, list):
            value = tuple(math.nan if v is None else v for v in value)
        values[key] = value
    return values


_QUANT_LISTS = ("rows", "margin_buckets", "by_subject", "confidence_buckets")


def _quant_of(quant: dict[str, Any]) -> QuantSummary:
    """One quant's (or the floor's) summary from its JSON dict."""
    rows = tuple(QuestionRow(**_fields_of(QuestionRow, row)) for row in quant["rows"])
    values = _fields_of(QuantSummary, {k: v for k, v in quant.items() if k not in _QUANT_LISTS})
    extra = {
        k: math.nan if v is None else v
        for k, v in quant.items()
        if k in metrics.REGISTRY and k not in QUANT_FIELDS
    }
    return QuantSummary(
        **values,
        extra=extra,
        margin_buckets=list(quant["margin_buckets"]),
        by_subject=list(quant.get("by_subject", [])),
        confidence_buckets=list(quant.get("confidence_buckets", [])),
        rows=rows,
    )


def report_from_dict(document: dict[str, Any]) -> Report:
    """Rebuild a Report from its JSON document (`Report.to_dict`'s inverse; null floats become nan).

    Raises:
        KeyError, TypeError, ValueError: the document lacks a field or has one of the wrong shape.
    """
    baseline = document.get("baseline")
    quants = [_quant_of(quant) for quant in document["quants"]]
    floor = document.get("floor")
    return Report(
        set=document["set"],
        task=document["task"],
        prompt_version=document["prompt_version"],
        source=document["source"],
        n_questions=document["n_questions"],
        skipped_rows=tuple(SkippedRow(**row) for row in document.get("skipped_rows", [])),
        cache_top_k=document["cache_top_k"],
        baseline=BaselineSummary(**_fields_of(BaselineSummary, baseline)) if baseline else None,
        quants=tuple(quants),
        complete=document.get("complete", True),
        skipped_questions=tuple(
            SkippedQuestion(**q) for q in document.get("skipped_questions", [])
        ),
        mode=document.get("mode", "letter"),
        selection=document.get("selection", ""),
        answer_rule=document.get("answer_rule"),
        n_shots=document.get("n_shots", 0),
        floor=_quant_of(floor) if floor else None,
        floor_method=document.get("floor_method"),
        calibration=tuple(CalibrationOverlap(**c) for c in document.get("calibration", [])),
    )
