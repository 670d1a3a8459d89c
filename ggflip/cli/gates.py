"""`--fail-if` on the command line: conditions parsed before a run, checked on its report.

`run`, `kld` (and `pick`) parse the flag with `fail_if_gates` before anything is loaded, so a
misspelt metric fails at once, and pass their exit code and report through `gated`, which prints
one stderr line per quant and condition met and turns them into `ExitCode.THRESHOLD`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ggflip.errors import ExitCode
from ggflip.scoring.gates import Gate, failures, parse_gates

ReportT = TypeVar("ReportT")


def fail_if_gates(args: argparse.Namespace, mode: str | None) -> list[Gate]:
    """The `--fail-if` conditions of the command line, checked against `mode`'s metrics.

    Raises:
        UsageError: a condition that does not parse or names an unknown metric.
    """
    return parse_gates(getattr(args, "fail_if", None) or (), mode)


def gated(code: int, gates: Sequence[Gate], document: Mapping[str, Any] | None) -> int:
    """`code`, or `ExitCode.THRESHOLD` when the run finished and a quant of `document` meets a
    condition (each such quant and condition said on stderr)."""
    if code != ExitCode.OK or not gates or document is None:
        return code
    lines = failures(document, gates)
    for line in lines:
        print(f"ggflip: fail-if: {line}", file=sys.stderr)
    return int(ExitCode.THRESHOLD) if lines else code


def keeping(
    emit: Callable[[ReportT], None], kept: list[ReportT]
) -> Callable[[ReportT], None]:
    """`emit`, also keeping each report it is given (the last is the one gated)."""

    def emit_and_keep(report: ReportT) -> None:
        kept.append(report)
        emit(report)

    return emit_and_keep
