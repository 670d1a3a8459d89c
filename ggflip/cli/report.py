"""`ggflip report`: a saved run's JSON report rendered as an HTML page with plots, or Markdown.

Owns no logic of its own: reading and rendering the report is `ggflip.reports.pages`, writing it
`ggflip.store.atomic`; the rendered page goes to a file, Markdown to a file or stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ggflip.cli.consoles import console
from ggflip.errors import ExitCode, UsageError


def add_report_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the report subcommand."""
    report = subparsers.add_parser(
        "report", help="render a run's JSON report as an HTML page with plots, or Markdown"
    )
    report.add_argument(
        "run",
        type=Path,
        metavar="RUN.json",
        help="a report written by `ggflip run --json` or `--out`",
    )
    report.add_argument(
        "--html", type=Path, help="write a self-contained HTML page with plots here"
    )
    report.add_argument(
        "--markdown", type=Path, help="write Markdown tables here (default without --html: stdout)"
    )
    report.add_argument(
        "--tui", action="store_true", help="an attribution report: show it in the terminal UI"
    )
    report.add_argument(
        "--by",
        help="the frontier's damage metric: kl_mean (default), p99, flips, or a metric name",
    )


def report_command(args: argparse.Namespace) -> int:
    """Render a saved run report as HTML and/or Markdown."""
    from ggflip.attribute.report import SCHEMA as ATTRIBUTE_SCHEMA
    from ggflip.reports.pages import load_run_report, render_html, render_markdown
    from ggflip.store.atomic import atomic_write_bytes

    document = load_run_report(args.run)
    if document.get("schema") == ATTRIBUTE_SCHEMA:
        from ggflip.reports.attribute import render_attribute_html, render_attribute_markdown

        if args.tui:
            from ggflip.tui.attribute_view import AttributionApp

            AttributionApp(document).run()
            return int(ExitCode.OK)

        render_html, render_markdown = render_attribute_html, render_attribute_markdown
    elif args.tui:
        raise UsageError("--tui shows an attribution report (from `ggflip attribute --out`)")
    elif args.by:
        from ggflip.scoring.frontier import frontier_object

        document["frontier"] = frontier_object(document, args.by)
    if args.html:
        atomic_write_bytes(args.html, render_html(document).encode("utf-8"))
        console(stderr=True).print(f"wrote {args.html}", markup=False, highlight=False)
    if args.markdown:
        atomic_write_bytes(args.markdown, render_markdown(document).encode("utf-8"))
        console(stderr=True).print(f"wrote {args.markdown}", markup=False, highlight=False)
    if not args.html and not args.markdown:
        sys.stdout.write(render_markdown(document))
    return int(ExitCode.OK)
