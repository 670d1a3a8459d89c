"""`ggflip run --task gsm8k|prompts|mt_bench`: the generation mode from the command line.

Owns no generation logic: it turns its flags into `GenOptions`, resolves them into a `GenSpec`
(as the TUI does), iterates `generate.run_generation`, draws progress on stderr and prints one
JSON document (`--json`) or a summary table.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ggflip.cli.run import emit_document, progress_bars
from ggflip.cli.scoring_flags import scoring_threads
from ggflip.errors import ExitCode
from ggflip.generate.engine import report as partial_report
from ggflip.generate.engine import run_generation
from ggflip.generate.events import (
    GenBaselineFinished,
    GenFinished,
    GenQuantFinished,
    TurnGenerated,
    TurnsRestored,
)
from ggflip.generate.report import GenBaseline, GenQuant, GenReport
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.reports.generation import SUMMARY_HEADER, summary_rows
from ggflip.runs.events import BaselineFromCache, ModelLoaded, ModelLoading


def gen_options(args: argparse.Namespace) -> GenOptions:
    """`ggflip run`'s flags for a generation task as GenOptions."""
    return GenOptions(
        task=args.task,
        models_path=args.models,
        set_name=args.set_name,
        data=args.data,
        fields=tuple(getattr(args, "field", ()) or ()),
        shots=getattr(args, "shots", None),
        shots_from=getattr(args, "shots_from", None),
        limit=args.limit,
        seed=args.seed,
        first=bool(getattr(args, "first", False)),
        baseline=getattr(args, "baseline", None),
        quants=tuple(getattr(args, "quant", None) or ()),
        chat=bool(getattr(args, "chat", False)),
        system=getattr(args, "system", None),
        max_new_tokens=getattr(args, "max_new_tokens", None),
        batch_size=args.batch_size,
        top_k=getattr(args, "top_k", None),
        cache_dir=args.cache_dir,
        no_cache=args.no_cache,
        resume=not getattr(args, "no_resume", False),
        scoring_threads=scoring_threads(args),
    )


def generate_command(args: argparse.Namespace) -> int:
    """Run a generation comparison with progress on stderr; print the report."""
    from rich.progress import TaskID

    from ggflip.backends.registry import backend_factory

    spec = resolve_gen_spec(gen_options(args))
    stderr = Console(stderr=True)
    events = run_generation(spec, backend_factory(spec.model_set))
    next(events)  # GenStarted: files and vocabularies are checked before progress is drawn
    # Which prompts a --limit took decides what the numbers mean: say it before generating.
    stderr.print(f"prompts: {spec.selection}", style="dim", markup=False)
    baseline: GenBaseline | None = None
    quants: list[GenQuant] = []
    report: GenReport | None = None
    try:
        with progress_bars(stderr) as progress:
            bars: dict[str, TaskID] = {}
            for event in events:
                if isinstance(event, ModelLoading):
                    bars.setdefault(
                        event.label, progress.add_task(f"{event.label} ({event.role})", total=None)
                    )
                elif isinstance(event, TurnsRestored):
                    stderr.print(
                        f"[dim]{event.label}: {event.n_restored} of {event.total} turns restored "
                        "from the run store (--no-resume generates them again)[/dim]"
                    )
                elif isinstance(event, BaselineFromCache):
                    stderr.print(f"[dim]{event.label}: baseline from cache[/dim]")
                elif isinstance(event, ModelLoaded):
                    progress.update(bars[event.label], description=f"{event.label} ({event.role})")
                elif isinstance(event, TurnGenerated) and event.label in bars:
                    progress.update(bars[event.label], completed=event.done, total=event.total)
                elif isinstance(event, GenBaselineFinished):
                    baseline = event.summary
                elif isinstance(event, GenQuantFinished):
                    quants.append(event.summary)
                elif isinstance(event, GenFinished):
                    report = event.report
    except KeyboardInterrupt:
        events.close()
        report = partial_report(spec, baseline, quants)
        _emit(args, report)
        stderr.print(
            f"ggflip: error: interrupted; the report holds the {len(quants)} quant(s) that "
            "finished; run the same command again to resume"
        )
        return int(ExitCode.INTERRUPTED)
    assert report is not None
    _emit(args, report)
    return int(ExitCode.OK)


def _emit(args: argparse.Namespace, report: GenReport) -> None:
    emit_document(args, report.to_json(), lambda console: render_gen_report(report, console))


def render_gen_report(report: GenReport, console: Console) -> None:
    """The summary table of a generation report."""
    title = f"ggflip generate: set {report.set}, {report.task}, {report.n_turns} turns"
    if report.baseline is not None and report.baseline.accuracy is not None:
        title += f", baseline accuracy {report.baseline.accuracy:.3f} ({report.answer_rule})"
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    table = Table(title=title)
    for column in SUMMARY_HEADER:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in summary_rows(report.to_dict()):
        table.add_row(*row)
    console.print(table)
    for skipped in report.skipped:
        console.print(f"[yellow]skipped {skipped.id} turn {skipped.turn}: {skipped.reason}[/]")
