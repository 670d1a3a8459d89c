"""`ggflip pick REPORT.json [REPORT.json ...] --budget 6GB [--compare A B] [--fail-if COND]`: the
file to run at a memory budget, and one quant against another.

Owns no logic: reading, checking and merging the reports, the memory at another context and the
choice are `ggflip.reports.pick` (over `ggflip.scoring.frontier` and `ggflip.scoring.pick`); the
comparison is `ggflip.scoring.versus`; `--fail-if` is the same gate as `run`'s and `kld`'s.
With `--json` stdout carries the one `ggflip.pick/1` document; a budget nothing fits, or reports
of different baselines or questions, are one `ggflip: error:` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ggflip.cli.gates import fail_if_gates, gated
from ggflip.cli.scoring_flags import add_fail_if_flag
from ggflip.errors import ExitCode, UsageError
from ggflip.store.documents import finite


def add_pick_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `ggflip pick` and its flags."""
    pick = subparsers.add_parser(
        "pick",
        help="the best file at a memory budget, from saved reports (same baseline and questions)",
    )
    pick.add_argument(
        "reports", type=Path, nargs="+", metavar="REPORT.json",
        help="reports written by `ggflip run --out` or `ggflip kld --out`",
    )
    pick.add_argument(
        "--budget",
        help="memory you have, with a unit: 700MB, 5.5GiB, 123456789B (kB, MB, GB: powers of "
        "1000; KiB, MiB, GiB: of 1024)",
    )
    pick.add_argument(
        "--ctx", type=int, help="context length to count the KV cache at (default: the report's)"
    )
    pick.add_argument(
        "--kv-type", help="KV cache type, e.g. f16, q8_0, q4_0 (default: the report's)"
    )
    pick.add_argument(
        "--by", default="kl_mean",
        help="damage metric: kl_mean (default), p99, p99.9 (corpus), flips, ppl (corpus), or a "
        "metric name",
    )
    pick.add_argument(
        "--compare", nargs=2, metavar=("A", "B"),
        help="quant A against quant B on the same questions or text: paired McNemar on their "
        "correctness and the paired KL difference with its 95%% interval",
    )
    add_fail_if_flag(pick)
    pick.add_argument("--json", action="store_true", help="write one JSON document on stdout")


def pick_command(args: argparse.Namespace) -> int:
    """Name the least damaged file that fits the budget, why, and whether it is equivalent."""
    from ggflip.reports import pick
    from ggflip.scoring.pick import parse_size

    if args.budget is None and args.compare is None:
        raise UsageError("pick needs --budget SIZE (e.g. 6GB), --compare A B, or both")
    gates = fail_if_gates(args, None)
    budget = parse_size(args.budget) if args.budget is not None else None
    if args.ctx is not None and args.ctx <= 0:
        raise UsageError(f"--ctx {args.ctx}: a context length is at least 1 token")
    documents = pick.load_reports(args.reports)
    document = pick.merged(args.reports, documents)
    if args.ctx is not None or args.kv_type:
        document = pick.at_context(document, args.ctx, args.kv_type)
    result: dict[str, Any] = {}
    if budget is not None:
        result = pick.pick_document(args.reports, document, budget, args.by, args.budget.strip())
    if args.compare is not None:
        from ggflip.scoring.versus import compare_quants

        result["compare"] = compare_quants(document, *args.compare)
    if args.json:
        sys.stdout.write(json.dumps(finite(result), indent=1, ensure_ascii=False) + "\n")
    else:
        _print(result)
    return gated(int(ExitCode.OK), gates, document)


def _print(result: dict[str, Any]) -> None:
    """The choice's lines, then the comparison's table and sentence."""
    from ggflip.cli.consoles import console
    from ggflip.reports import pick as picking
    from ggflip.reports.versus import render_comparison

    if "pick" in result:
        print("\n".join(picking.pick_lines(result, picking.damage_formatter(result))))
    if isinstance(result.get("compare"), dict):
        render_comparison(result["compare"], console())
