"""`ggflip attribute`: which tensor groups of a quant do its damage, what restoring each
recovers, and a recipe for a byte budget.

Owns no logic: flags to `AttributeOptions`, `attribute.engine.run_attribution`'s events to one
progress line per model on stderr, and the report as tables, JSON (`--json`, `--out`), Markdown
and HTML.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import TaskID

from ggflip.attribute.engine import run_attribution
from ggflip.attribute.events import AttributionPlanned, ModelMeasured, ModelStarted
from ggflip.attribute.groups import BY_CHOICES
from ggflip.attribute.measure import ModelProgress
from ggflip.attribute.report import AttributionReport
from ggflip.attribute.setup import AttributeOptions, resolve_attribute_spec
from ggflip.choice.setup import RunOptions
from ggflip.cli.consoles import console
from ggflip.cli.progress import progress_bars
from ggflip.cli.run import emit_document
from ggflip.cli.scoring_flags import add_cache_flags, add_model_flags, add_text_flags
from ggflip.cli.scoring_flags import scoring_threads as requested_threads
from ggflip.gguf.memory import format_bytes
from ggflip.reports.attribute import (
    render_attribute_html,
    render_attribute_markdown,
    render_attribute_report,
)
from ggflip.store.atomic import atomic_write_bytes
from ggflip.store.documents import to_json


def add_attribute_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `ggflip attribute` and its flags."""
    parser = subparsers.add_parser(
        "attribute",
        help="which tensor groups of a quant do its damage, and a recipe that recovers it",
    )
    add_model_flags(parser)
    parser.add_argument("--baseline", help="the baseline GGUF (instead of a models.toml set)")
    parser.add_argument(
        "--quant", help="the quant GGUF; with --set, the label of one of the set's quants"
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="take restored groups from this GGUF (e.g. a Q8_0) instead of the baseline",
    )
    parser.add_argument(
        "--by",
        default="kind",
        help=f"group tensors by {', '.join(BY_CHOICES)} (or kindxlayer; default: kind)",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="REGEX",
        help="a group of the tensors whose name matches REGEX (repeatable; the rest is one group)",
    )
    add_text_flags(
        parser,
        "measure KL on this text (corpus mode; repeatable); without it, on questions",
        required=False,
    )
    _add_question_flags(parser)
    _add_recipe_flags(parser)
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where the temporary hybrids are written (default: the system's temporary folder)",
    )
    add_cache_flags(parser, "neither read nor keep measured models (a re-run measures again)")
    parser.add_argument("--json", action="store_true", help="write the report as JSON on stdout")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown")
    parser.add_argument("--html", type=Path, help="also write the report as an HTML page")


def _add_question_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="mmlu", help="without --text: the task (default: mmlu)")
    parser.add_argument("--data", help="without --text: the questions' file or hf: source")
    parser.add_argument("--limit", type=int, help="without --text: N questions (a fixed sample)")
    parser.add_argument("--seed", type=int, help="with --limit: the sample's seed (default: 0)")
    parser.add_argument("--first", action="store_true", help="with --limit: the first N questions")
    parser.add_argument(
        "--subject", action="append", default=[], help="only this subject (repeatable)"
    )


def _add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe-budget",
        metavar="+PCT%|+SIZE|SIZE",
        help="a recipe raising the best groups within +10%% of the quant's size, +200MiB, or a "
        "target file size like 260MB",
    )
    parser.add_argument(
        "--verify",
        type=Path,
        action="append",
        default=[],
        metavar="TEXT",
        help="build the recipe's model and measure it on this held-out text (repeatable)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="GGUF",
        help="with --verify: also measure this uniform quant, e.g. a Q3_K_M (repeatable)",
    )
    parser.add_argument(
        "--write-recipe",
        type=Path,
        metavar="GGUF",
        help="write the recipe's model here (spliced, bit-exact tensors)",
    )


def attribute_options(args: argparse.Namespace) -> AttributeOptions:
    """The flags as AttributeOptions."""
    choice = RunOptions(
        task=args.task,
        data=args.data,
        limit=args.limit,
        seed=args.seed,
        first=args.first,
        subjects=tuple(args.subject),
        scoring_threads=requested_threads(args),
    )
    return AttributeOptions(
        models_path=args.models,
        set_name=args.set_name,
        baseline=args.baseline,
        quant=args.quant,
        source=args.source,
        by=args.by,
        groups=tuple(args.group),
        texts=tuple(args.text or ()),
        ctx=args.ctx,
        chunks=args.chunks,
        score_from=args.score_from,
        choice=choice,
        budget=args.recipe_budget,
        verify=tuple(args.verify),
        compare=tuple(args.compare),
        write_recipe=args.write_recipe,
        work_dir=args.work_dir,
        cache_dir=args.cache_dir,
        no_cache=args.no_cache,
        scoring_threads=requested_threads(args),
    )


class _Progress:
    """One line per model measured, and a bar of the current model's chunks or questions."""

    def __init__(self, stderr: Console) -> None:
        self.bars = progress_bars(stderr)
        self.task: TaskID | None = None
        self._title = ""

    def __call__(self, event: object) -> None:
        say = self.bars.console.print
        if isinstance(event, AttributionPlanned):
            say(
                f"attribute: {len(event.groups)} groups, {event.n_models} models to measure "
                f"({event.stored} hybrids already measured); each hybrid up to "
                f"{format_bytes(event.hybrid_bytes)} in {event.work_dir} "
                f"({format_bytes(event.free_bytes)} free), one at a time",
                markup=False,
                highlight=False,
            )
        elif isinstance(event, ModelStarted):
            self._bar(f"[{event.index}/{event.total}] {event.label}")
            if not self.bars.console.is_terminal:  # no bar is drawn: say what runs
                say(f"[{event.index}/{event.total}] {event.label} …", markup=False)
        elif isinstance(event, ModelProgress) and self.task is not None:
            self.bars.update(self.task, completed=event.done, total=event.total)
            self.bars.update(self.task, description=f"{self._title} ({event.role})")
        elif isinstance(event, ModelMeasured):
            how = "stored" if event.stored else f"{event.seconds:.1f} s"
            say(
                f"[{event.index}/{event.total}] {event.label}: mean KL "
                f"{event.figures.get('kl_mean', float('nan')):.5f} ({how})",
                markup=False,
                highlight=False,
            )

    def _bar(self, title: str) -> None:
        if self.task is not None:
            self.bars.remove_task(self.task)
        self._title = title
        self.task = self.bars.add_task(title, total=None)


def attribute_command(args: argparse.Namespace) -> int:
    """Run an attribution with progress on stderr; write the report."""
    from ggflip.backends.registry import backend_factory

    stderr = console(stderr=True)
    progress = _Progress(stderr)
    with (
        tempfile.TemporaryDirectory(prefix="ggflip-attribute-cache-") as scratch,
        progress.bars,
    ):
        spec = resolve_attribute_spec(attribute_options(args), backend_factory, Path(scratch))
        events = run_attribution(spec)
        while True:
            try:
                progress(next(events))
            except StopIteration as stop:
                report: AttributionReport = stop.value
                break
    _emit(args, report.to_json())
    return 0


def _emit(args: argparse.Namespace, document: dict[str, object]) -> None:
    if args.markdown:
        atomic_write_bytes(args.markdown, render_attribute_markdown(document).encode())
    if args.html:
        atomic_write_bytes(args.html, render_attribute_html(document).encode())
    emit_document(args, to_json(document), lambda out: render_attribute_report(document, out))
