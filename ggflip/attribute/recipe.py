"""A recipe: which groups of a quant to raise to a higher-precision type within a byte budget,
chosen greedily by KL recovered per extra byte, and how to build it.

`parse_budget` reads `--recipe-budget`: `+10%` (of the quant's file size), `+200MiB` (bytes over
the quant) or `1.2GB` (the whole file's target size). `greedy` takes the groups with the most KL
recovered per extra byte first, skipping one that no longer fits and going on with the next
(groups that recover nothing are never taken). Greedy is a heuristic for this knapsack: one large
group that just misses the budget can leave room only for poor ones, so `choose` tries every
subset when there are few groups (up to 16 that recover something: 65,536 subsets) and keeps
greedy for more. Recoveries are measured one group at a time, so the
recipe's KL is a prediction that assumes they add up; `--verify` measures it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ggflip.errors import UsageError
from ggflip.scoring.pick import parse_size

_PERCENT = re.compile(r"\+\s*(\d+(?:\.\d+)?)\s*%")


@dataclass(frozen=True)
class Candidate:
    """A group that could be raised: its extra bytes and the KL its raising recovers."""

    name: str
    extra_bytes: int
    recovered: float

    @property
    def per_byte(self) -> float:
        """KL recovered per extra byte (infinite when raising it costs no bytes)."""
        return self.recovered / self.extra_bytes if self.extra_bytes > 0 else float("inf")


def parse_budget(text: str, quant_bytes: int) -> int:
    """Extra bytes `--recipe-budget TEXT` allows over a quant of `quant_bytes` bytes.

    Raises:
        UsageError: not a percentage, a +size or a size; a target below the quant's size.
    """
    text = text.strip()
    percent = _PERCENT.fullmatch(text)
    if percent:
        return int(Fraction(percent[1]) * quant_bytes / 100)
    if text.startswith("+"):
        return parse_size(text[1:].strip(), "--recipe-budget")
    target = parse_size(text, "--recipe-budget")
    if target < quant_bytes:
        raise UsageError(
            f"--recipe-budget {text}: below the quant's own {quant_bytes:,} bytes; give a larger "
            "target, +SIZE or +PERCENT%"
        )
    return target - quant_bytes


EXHAUSTIVE_UP_TO = 16  # groups that recover something: beyond this many, greedy only


def choose(candidates: Sequence[Candidate], budget: int) -> tuple[tuple[Candidate, ...], str]:
    """The groups to raise and how they were chosen: with few useful groups, the subset that
    recovers the most within the budget (every subset tried; fewer bytes break ties), which is
    never worse than `greedy`; with many, `greedy`."""
    useful = [c for c in candidates if c.recovered > 0]
    if len(useful) > EXHAUSTIVE_UP_TO:
        return greedy(useful, budget), "greedy"
    best: tuple[float, int, tuple[Candidate, ...]] = (0.0, 0, ())
    for mask in range(1, 1 << len(useful)):
        subset = tuple(c for i, c in enumerate(useful) if mask >> i & 1)
        cost = sum(max(c.extra_bytes, 0) for c in subset)
        if cost > budget:
            continue
        value = sum(c.recovered for c in subset)
        if value > best[0] or (value == best[0] and cost < best[1]):
            best = (value, cost, subset)
    chosen = best[2]
    return chosen, "greedy" if set(chosen) == set(greedy(useful, budget)) else "exhaustive"


def greedy(candidates: Sequence[Candidate], budget: int) -> tuple[Candidate, ...]:
    """The groups to raise: by recovery per extra byte, best first, each that still fits."""
    useful = [c for c in candidates if c.recovered > 0]
    ranked = sorted(useful, key=lambda c: (-c.per_byte, c.extra_bytes, c.name))
    chosen, spent = [], 0
    for candidate in ranked:
        cost = max(candidate.extra_bytes, 0)
        if spent + cost <= budget:
            chosen.append(candidate)
            spent += cost
    return tuple(chosen)


@dataclass(frozen=True)
class Raise:
    """One group of a recipe: (llama-quantize regex, ggml type) pairs raising its tensors to
    their types in the source file (one pair unless its tensors are of several types)."""

    group: str
    tensor_types: tuple[tuple[str, str], ...]


def tensor_type_args(raises: Sequence[Raise]) -> list[str]:
    """llama-quantize's `--tensor-type REGEX=TYPE` arguments for the recipe (lower-case types,
    as llama-quantize prints them); a group of mixed types is named once per type."""
    args = []
    for item in raises:
        for regex, ggml_type in item.tensor_types:
            args += ["--tensor-type", f"{regex}={ggml_type.lower()}"]
    return args


def quantize_command(raises: Sequence[Raise], base: str, out: str, qtype: str) -> str:
    """The llama-quantize command line that would build the recipe from the baseline."""
    return shlex.join(["llama-quantize", *tensor_type_args(raises), base, out, qtype])
