"""`ggflip pick REPORT.json [REPORT.json ...] --budget 6GB`: the file to run at a memory budget.

Owns no logic: reading, checking and merging the reports, the memory at another context and the
choice are `ggflip.reports.pick` (over `ggflip.scoring.frontier` and `ggflip.scoring.pick`).
With `--json` stdout carries the one `ggflip.pick/1` document; a budget nothing fits, or reports
of different baselines or questions, are one `ggflip: error:` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ggflip.errors import ExitCode, UsageError


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
        "--budget", required=True,
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
    pick.add_argument("--json", action="store_true", help="write one JSON document on stdout")


def pick_command(args: argparse.Namespace) -> int:
    """Name the least damaged file that fits the budget, why, and whether it is equivalent."""
    from ggflip.reports import pick
    from ggflip.scoring.pick import parse_size

    budget = parse_size(args.budget)
    if args.ctx is not None and args.ctx <= 0:
        raise UsageError(f"--ctx {args.ctx}: a context length is at least 1 token")
    documents = pick.load_reports(args.reports)
    document = pick.merged(args.reports, documents)
    if args.ctx is not None or args.kv_type:
        document = pick.at_context(document, args.ctx, args.kv_type)
    result = pick.pick_document(args.reports, document, budget, args.by, args.budget.strip())
    if args.json:
        sys.stdout.write(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    else:
        print("\n".join(pick.pick_lines(result, pick.damage_formatter(result))))
    return int(ExitCode.OK)
