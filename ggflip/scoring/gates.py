"""`--fail-if` thresholds: a report's quants against conditions, for quantizers' CI.

A condition is `NAME OP VALUE`: NAME a registered metric (`ggflip.scoring.registry`; unknown
names fail with "did you mean"), `verdict` (the noise floor's: `indistinguishable` or
`different`), `equivalence` (`equivalent`, `different`, `undecided`) or `equivalence.CRITERION`
(one criterion's verdict: `accuracy`, `flips`, `kl_mean`); OP one of > >= < <= = !=; VALUE a
number for a metric (fractions as in the JSON: `flips>0.02` is two percent) and a word for a
verdict. A quant fails a condition when its value satisfies it (`kl_mean>0.01` fails a quant whose
mean KL is above 0.01); a value the report holds as null (not measured, not finite) fails too,
since it cannot be shown to pass. `failures` works on any mode's JSON document, so `run`, `kld`
and `pick` share it; the CLI turns any failure into `ExitCode.THRESHOLD`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ggflip.errors import UsageError, did_you_mean
from ggflip.scoring.registry import REGISTRY, metric

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}
VERDICT_WORDS: dict[str, tuple[str, ...]] = {
    "verdict": ("indistinguishable", "different"),
    "equivalence": ("equivalent", "different", "undecided"),
}
CRITERIA = ("accuracy", "flips", "kl_mean")


@dataclass(frozen=True)
class Gate:
    """One `--fail-if` condition."""

    name: str
    op: str
    value: float | str
    text: str

    def value_in(self, quant: Mapping[str, Any]) -> Any:
        """The quant's value of this gate's name (None when the report has none)."""
        if self.name.startswith("equivalence"):
            found = quant.get("equivalence") or {}
            if "." in self.name:
                found = (found.get("criteria") or {}).get(self.name.split(".", 1)[1]) or {}
            return found.get("verdict")
        value = quant.get(self.name)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            return None
        return value

    def fails(self, quant: Mapping[str, Any]) -> bool:
        """Whether `quant` meets the condition (a null value always does)."""
        value = self.value_in(quant)
        return value is None or OPERATORS[self.op](value, self.value)


def _split(text: str) -> tuple[str, str, str]:
    for op in OPERATORS:  # two-character operators first
        name, found, value = text.partition(op)
        if found:
            return name.strip(), op, value.strip()
    raise UsageError(
        f"--fail-if {text!r}: expected NAME OP VALUE with OP one of {' '.join(OPERATORS)}, "
        "e.g. kl_mean>0.01 or verdict=different"
    )


def _check_mode(text: str, base: str, criterion: str, mode: str | None) -> None:
    """Refuse a verdict `mode` never gives: the floor's outside multiple choice, an answer
    criterion in corpus mode."""
    if mode not in (None, "choice") and base == "verdict":
        raise UsageError(f"--fail-if {text!r}: the noise floor's verdict is multiple choice's only")
    if mode == "corpus" and criterion in ("accuracy", "flips"):
        raise UsageError(f"--fail-if {text!r}: corpus mode has no answers, only kl_mean")


def parse_gate(text: str, mode: str | None = None) -> Gate:
    """A `--fail-if` condition, checked against the registry (and `mode`'s metrics if given).

    Raises:
        UsageError: not NAME OP VALUE, an unknown name (with the closest), a metric `mode` does
            not report, a value that is not a number (a metric) or not a verdict word.
    """
    name, op, raw = _split(text)
    base, _, criterion = name.partition(".")
    if base in VERDICT_WORDS and (not criterion or base == "equivalence"):
        if criterion and criterion not in CRITERIA:
            hint = did_you_mean(criterion, CRITERIA)
            raise UsageError(f"--fail-if {text!r}: no criterion {criterion!r}{hint}")
        _check_mode(text, base, criterion, mode)
        words = VERDICT_WORDS[base]
        if raw not in words or op not in ("=", "!="):
            raise UsageError(
                f"--fail-if {text!r}: {name} takes = or != and one of {', '.join(words)}"
            )
        return Gate(name, op, raw, text)
    if name not in REGISTRY:
        hint = did_you_mean(name, [*REGISTRY, *VERDICT_WORDS], n=3, cutoff=0.5)
        raise UsageError(f"--fail-if {text!r}: unknown metric {name!r}{hint}")
    if mode is not None and mode not in metric(name).modes:
        raise UsageError(f"--fail-if {text!r}: {name} is not measured in {mode} mode")
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--fail-if {text!r}: {raw!r} is not a number") from None
    return Gate(name, op, value, text)


def parse_gates(texts: Iterable[str], mode: str | None = None) -> list[Gate]:
    """Every `--fail-if` condition given (see `parse_gate`)."""
    return [parse_gate(text, mode) for text in texts]


def failures(document: Mapping[str, Any], gates: Iterable[Gate]) -> list[str]:
    """One line per quant and condition it meets: "Q2_K: kl_mean = 0.455 (kl_mean>0.01)".

    `document` is any mode's JSON report (its `quants`, each with `label`); the floor is not a
    quant and is never gated.
    """
    lines = []
    for gate in gates:
        for quant in document.get("quants", []):
            if gate.fails(quant):
                value = gate.value_in(quant)
                shown = "null" if value is None else (
                    f"{value:.4g}" if isinstance(value, float) else str(value)
                )
                lines.append(f"{quant.get('label')}: {gate.name} = {shown} ({gate.text})")
    return lines
