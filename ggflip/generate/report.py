"""The report of a generation run: the one typed definition of its `--json` document.

Schema `ggflip.generate/1`. Rates are fractions in [0, 1]; non-finite floats are null.

    {
      "schema": "ggflip.generate/1", "ggflip_version": str,
      "set": str, "task": str, "prompt_version": str, "source": str, "selection": str,
      "chat": bool,
      "n_questions": int, "n_turns": int, "max_new_tokens": int, "cache_top_k": int,
      "answer_rule": str | null, "complete": bool,
      "chat_template_differs": [label],
      "skipped": [{"index": int, "id": str, "turn": int, "reason": str}],
      "baseline": {"label", "path", "seconds", "from_cache", "n_tokens", "truncated",
                   "accuracy": float | null, "accuracy_ci": [lo, hi] | null,
                   "memory", "memory_unknown"},
      "quants": [ {
          "label", "path", "seconds", "n", "n_tokens", "truncated", "memory", "memory_unknown",
          "accuracy", "baseline_accuracy", "accuracy_ci", "flips_lost", "flips_gained",
          "n_flips_lost", "n_flips_gained", "answer_changes", "mcnemar_p",
          "by_rule": {rule: {"accuracy", "baseline_accuracy", "n_flips_lost", "n_flips_gained",
                             "answer_changes"}},
          "same_text", "first_divergence": {"median", "p10", "p90", "never"},
          "kl_mean", "kl_question_mean", "kl_p99", "kl_max", "top1_agreement",
          "delta_p_mean", "delta_p_rms",
          "equivalence": {"verdict", "n_more", "criteria"} (`ggflip.scoring.criteria`: accuracy,
                          flips and KL over the turns with gold, KL alone without),
          <each registered generation metric that is not a field above, by name>,
          "rows": [ {"index", "id", "turn", "gold", "answers": {rule: [base, quant]},
                     "flip", "changed", "base_text", "quant_text", "base_truncated",
                     "quant_truncated", "n_tokens", "quant_n_tokens", "n_prompt_tokens",
                     "first_divergence", "kl_mean", "kl_max", "top1_agreement"} ]
      } ],
      "frontier": {<ggflip.scoring.frontier.frontier_object: memory against mean KL>}
    }

Accuracy and flips use the task's answer rule (`answer_rule`; null for a task without gold
answers, where those fields are null); `by_rule` has every rule. `flip` is
"correct_to_incorrect", "incorrect_to_correct" or null. `first_divergence` is over turns whose
texts differ ("never" counts the identical ones; quantiles are observed token indexes, numpy's
`inverted_cdf`, and null when every text is the same).
`kl_mean` is per token over every generated token of the baseline; `kl_question_mean` the
mean of the per-turn means; p99 and max over tokens. `delta_p_rms` is the RMS of Δp.
`n_prompt_tokens` counts the turn's prompt as every model read it (BOS and, under the chat
template, its special tokens as single ids). `chat_template_differs` names the quants whose own
chat template is not the baseline's (under the chat template every model is asked through the
baseline's). `memory` is a model's weights + KV cache at the run's n_ctx
(`ggflip.gguf.memory.Memory.to_json`; null, with `memory_unknown` saying why, when its cache
cannot be sized).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ggflip import __version__
from ggflip.generate.compare import TurnRow
from ggflip.scoring import frontier, metrics, stats
from ggflip.scoring.criteria import answer_equivalence, kl_equivalence
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins

SCHEMA = "ggflip.generate/1"
MODE = "generate"


@dataclass(frozen=True)
class RuleScores:
    """Accuracy and flips of one answer rule."""

    accuracy: float
    baseline_accuracy: float
    n_flips_lost: int
    n_flips_gained: int
    answer_changes: float


@dataclass(frozen=True)
class Divergence:
    """Where the quant's own generation first left the baseline's (turns that differ)."""

    median: float
    p10: float
    p90: float
    never: int


@dataclass(frozen=True)
class GenBaseline:
    """The baseline's side: time, tokens, and its accuracy when there are gold answers."""

    label: str
    path: str
    seconds: float
    from_cache: bool
    n_tokens: int
    truncated: int
    accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None
    memory: dict[str, Any] | None = None
    memory_unknown: str | None = None


@dataclass(frozen=True)
class GenQuant:
    """One quant against the baseline over every compared turn."""

    label: str
    path: str
    seconds: float
    n: int
    n_tokens: int
    truncated: int
    accuracy: float | None
    baseline_accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    n_flips_lost: int
    n_flips_gained: int
    flips_lost: float
    flips_gained: float
    answer_changes: float | None
    mcnemar_p: float | None
    by_rule: dict[str, RuleScores]
    same_text: float
    first_divergence: Divergence
    kl_mean: float
    kl_question_mean: float
    kl_p99: float
    kl_max: float
    top1_agreement: float
    delta_p_mean: float
    delta_p_rms: float
    rows: tuple[TurnRow, ...]
    extra: dict[str, float] = field(default_factory=dict)  # registered metrics beyond these fields
    memory: dict[str, Any] | None = None
    memory_unknown: str | None = None
    equivalence: dict[str, Any] | None = None  # ggflip.scoring.criteria's object
    settings: dict[str, Any] = field(default_factory=dict)  # llama settings unlike the baseline's
    imatrix: dict[str, Any] = field(default_factory=dict)  # the GGUF's imatrix provenance


QUANT_FIELDS = frozenset(f.name for f in dataclasses.fields(GenQuant))


@dataclass(frozen=True)
class TokenArrays:
    """What generation's metric kernels read: per generated token of the baseline (every turn
    pooled), the teacher-forced KL (n_tokens,), and the turns themselves."""

    kl: NDArray[np.float64]
    rows: tuple[TurnRow, ...]


@dataclass(frozen=True)
class SkippedTurn:
    """A turn no model generated (its prompt leaves fewer than max_new_tokens of n_ctx)."""

    index: int
    id: str
    turn: int
    reason: str


def _rule_scores(rows: Sequence[TurnRow], rule: str) -> RuleScores | None:
    marks = [r.correct(rule) for r in rows]
    pairs = [m for m in marks if m is not None]
    if not pairs:
        return None
    changed = np.mean([r.answers[rule][0] != r.answers[rule][1] for r in rows])
    return RuleScores(
        accuracy=float(np.mean([q for _, q in pairs])),
        baseline_accuracy=float(np.mean([b for b, _ in pairs])),
        n_flips_lost=sum(b and not q for b, q in pairs),
        n_flips_gained=sum(q and not b for b, q in pairs),
        answer_changes=float(changed),
    )


def index_quantile(indexes: Sequence[int], q: float) -> float:
    """The q-quantile of token indexes as an observed index: the smallest one at or below which at
    least a fraction q of them lie (numpy's `inverted_cdf`, Hyndman and Fan's type 1); nan when
    there are none."""
    return float(np.quantile(indexes, q, method="inverted_cdf")) if len(indexes) else math.nan


def summarize(
    label: str,
    path: str,
    rows: Sequence[TurnRow],
    rule: str | None,
    seconds: float,
    margins: Margins = DEFAULT_MARGINS,
) -> GenQuant:
    """A quant's summary over its compared turns."""
    token_kl = np.concatenate([np.asarray(r.token_kl) for r in rows]) if rows else np.zeros(0)
    n_tokens = sum(r.n_tokens for r in rows)
    rules = sorted({name for r in rows for name in r.answers})
    by_rule = {name: s for name in rules if (s := _rule_scores(rows, name)) is not None}
    main = by_rule.get(rule) if rule else None
    n = len(rows)
    lost, gained = (main.n_flips_lost, main.n_flips_gained) if main else (0, 0)
    graded = sum(r.correct(rule) is not None for r in rows) if rule else 0
    correct = round(main.accuracy * graded) if main else 0
    diverged = [r.first_divergence for r in rows if r.first_divergence is not None]
    median, p10, p90 = (index_quantile(diverged, q) for q in (0.5, 0.1, 0.9))
    return GenQuant(
        label=label,
        path=path,
        seconds=seconds,
        n=n,
        n_tokens=n_tokens,
        truncated=sum(r.quant_truncated for r in rows),
        accuracy=main.accuracy if main else None,
        baseline_accuracy=main.baseline_accuracy if main else None,
        accuracy_ci=stats.wilson_interval(correct, graded) if main else None,
        n_flips_lost=lost,
        n_flips_gained=gained,
        flips_lost=lost / graded if graded else 0.0,
        flips_gained=gained / graded if graded else 0.0,
        answer_changes=main.answer_changes if main else None,
        mcnemar_p=stats.mcnemar_exact(lost, gained) if main else None,
        by_rule=by_rule,
        same_text=float(np.mean([r.first_divergence is None for r in rows])) if n else 1.0,
        first_divergence=Divergence(median, p10, p90, n - len(diverged)),
        kl_mean=float(token_kl.mean()) if token_kl.size else 0.0,
        kl_question_mean=float(np.mean([r.kl_mean for r in rows])) if n else 0.0,
        kl_p99=float(np.quantile(token_kl, 0.99)) if token_kl.size else 0.0,
        kl_max=float(token_kl.max()) if token_kl.size else 0.0,
        top1_agreement=_top1(rows),
        delta_p_mean=sum(r.delta_p_sum for r in rows) / n_tokens if n_tokens else 0.0,
        delta_p_rms=math.sqrt(sum(r.delta_p_sq_sum for r in rows) / n_tokens) if n_tokens else 0.0,
        rows=tuple(rows),
        extra=metrics.extra_values(MODE, TokenArrays(token_kl, tuple(rows)), QUANT_FIELDS),
        equivalence=_equivalence(rows, graded, lost, gained, main is not None, margins),
    )


def _equivalence(
    rows: Sequence[TurnRow], graded: int, lost: int, gained: int, gold: bool, margins: Margins
) -> dict[str, Any]:
    """Accuracy, flips and KL over turns with gold answers; KL alone without."""
    turn_kl = np.array([r.kl_mean for r in rows], dtype=np.float64)
    if gold:
        return answer_equivalence(graded, lost, gained, turn_kl, margins, unit="turns")
    return kl_equivalence(turn_kl, margins, unit="turns")


def _top1(rows: Sequence[TurnRow]) -> float:
    """Fraction of every baseline token (all turns pooled) that is also the quant's argmax."""
    total = sum(r.n_tokens for r in rows)
    return sum(r.top1_agreement * r.n_tokens for r in rows) / total if total else 1.0


def flip_of(row: TurnRow, rule: str | None) -> str | None:
    """The row's flip under the answer rule: "correct_to_incorrect", "incorrect_to_correct"."""
    marks = row.correct(rule) if rule else None
    if marks is None or marks[0] == marks[1]:
        return None
    return "correct_to_incorrect" if marks[0] else "incorrect_to_correct"


@dataclass(frozen=True)
class GenReport:
    """Everything a generation run reports (the `--json` document)."""

    set: str
    task: str
    prompt_version: str
    source: str
    chat: bool
    n_questions: int
    n_turns: int
    max_new_tokens: int
    cache_top_k: int
    answer_rule: str | None
    baseline: GenBaseline | None
    quants: Sequence[GenQuant]
    skipped: Sequence[SkippedTurn] = ()
    complete: bool = True
    chat_template_differs: Sequence[str] = ()
    selection: str = ""  # which prompts --limit took ("100 of 1319 prompts, a sample ...")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as plain values (per-token KL and token pieces left out; non-finite
        floats null)."""
        document = {"schema": SCHEMA, "ggflip_version": __version__, **_plain(_asdict(self))}
        for quant, summary in zip(document["quants"], self.quants):
            for row_dict, row in zip(quant["rows"], summary.rows):
                for name in ("token_kl", "base_pieces", "quant_pieces"):
                    row_dict.pop(name, None)
                row_dict.pop("delta_p_sum", None)
                row_dict.pop("delta_p_sq_sum", None)
                row_dict["flip"] = flip_of(row, self.answer_rule)
                rule = self.answer_rule
                row_dict["changed"] = (
                    row.answers[rule][0] != row.answers[rule][1]
                    if rule and rule in row.answers
                    else None
                )
        document["quants"] = [
            metrics.with_extra(quant, quant.pop("extra"), before="rows")
            for quant in document["quants"]
        ]
        document["frontier"] = frontier.frontier_object(document)
        return document

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _asdict(value: Any) -> Any:
    return dataclasses.asdict(value)


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
