"""`ggflip run` and `ggflip prepare-demo`: build a RunSpec from flags, fold the engine's events.

This module owns no scoring logic: it resolves flags into a `RunSpec`, iterates
`engine.run_comparison`, shows progress on stderr and renders the `Report`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ggflip.cache import atomic_write_bytes
from ggflip.config import default_cache_dir, load_models_toml
from ggflip.engine import RunSpec, partial_report, run_comparison
from ggflip.errors import ExitCode, UsageError
from ggflip.events import (
    BaselineFinished,
    BaselineFromCache,
    ModelLoaded,
    ModelLoading,
    QuantFinished,
    QuestionScored,
    RunFinished,
)
from ggflip.render import render_report
from ggflip.report import BaselineSummary, QuantSummary, Report
from ggflip.task_source import load_task_questions, resolve_task

log = logging.getLogger("ggflip")


def build_run_spec(args: argparse.Namespace) -> RunSpec:
    """Resolve the run flags into a RunSpec (models, questions, cache).

    Raises:
        UsageError, ConfigError, DataError: for bad flags, settings or questions.
    """
    if args.limit is not None and args.limit <= 0:
        raise UsageError(f"--limit must be positive, got {args.limit}")
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    top_k = args.top_k
    if top_k is not None and top_k <= 0:
        raise UsageError(f"--top-k must be positive, got {top_k}")
    if args.shots is not None and args.shots < 0:
        raise UsageError(f"--shots must be zero or more, got {args.shots}")
    config = load_models_toml(args.models)
    if args.set_name is None:
        if len(config.sets) != 1:
            raise UsageError(f"{args.models}: choose a set with --set ({', '.join(sorted(config.sets)) or 'none defined'})")
        args.set_name = next(iter(config.sets))
    model_set = config.get_set(args.set_name)
    task = resolve_task(args.task, args.task_file, args.field, args.mode)
    questions, prompts = load_task_questions(
        task, data=args.data, skip_bad_rows=args.skip_bad_rows, limit=args.limit, seed=args.seed,
        subjects=args.subject, shots=args.shots, shots_from=args.shots_from,
    )
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return RunSpec(
        model_set=model_set, questions=questions, task=task.name, cache_dir=cache_dir, top_k=top_k,
        batch_size=args.batch_size, prompts=prompts, share_prefixes=not getattr(args, "no_prefix_reuse", False),
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_command(args: argparse.Namespace) -> int:
    """Run a comparison, showing progress on stderr; print the report (JSON or tables)."""
    from ggflip.backends.llama import LlamaBackendFactory

    spec = build_run_spec(args)
    stderr = Console(stderr=True)
    baseline: BaselineSummary | None = None
    quants: list[QuantSummary] = []
    report: Report | None = None
    events = run_comparison(spec, LlamaBackendFactory())
    next(events)  # RunStarted: every file and vocabulary is checked before progress is drawn
    try:
        with _progress(stderr) as progress:
            bars: dict[str, TaskID] = {}
            for event in events:
                if isinstance(event, ModelLoading):
                    bars[event.label] = progress.add_task(f"{event.label} ({event.role}) loading", total=None)
                elif isinstance(event, ModelLoaded):
                    progress.update(bars[event.label], description=f"{event.label} ({event.role})")
                elif isinstance(event, BaselineFromCache):
                    stderr.print(f"[dim]{event.label}: baseline scores from cache ({event.cache_path})[/dim]")
                elif isinstance(event, QuestionScored):
                    progress.update(bars[event.label], completed=event.done, total=event.total)
                    if not stderr.is_terminal and (event.done % max(1, event.total // 10) == 0 or event.done == event.total):
                        # Logs and CI: a line per tenth, since a redrawn bar only shows at the end there.
                        print(f"ggflip: {event.label} ({event.role}) {event.done}/{event.total}", file=sys.stderr, flush=True)
                elif isinstance(event, BaselineFinished):
                    baseline = event.summary
                elif isinstance(event, QuantFinished):
                    quants.append(event.summary)
                elif isinstance(event, RunFinished):
                    report = event.report
    except KeyboardInterrupt:
        events.close()
        report = partial_report(spec, baseline, quants)
        _emit(args, report)
        stderr.print(f"ggflip: error: interrupted; the report holds the {len(quants)} quant(s) that finished")
        return int(ExitCode.INTERRUPTED)
    assert report is not None
    _emit(args, report)
    return int(ExitCode.OK)


def _emit(args: argparse.Namespace, report: Report) -> None:
    document = report.to_json()
    if args.out:
        atomic_write_bytes(args.out, document.encode())
    if args.json:
        sys.stdout.write(document + "\n")
        sys.stdout.flush()
    else:
        render_report(report, Console(), flip_rows=args.rows)


def tasks_command(args: argparse.Namespace) -> int:
    """Print the built-in tasks: name, answer mode, shots, default source, description."""
    import json

    from rich.table import Table

    from ggflip.tasks import TASKS

    if args.json:
        rows = [
            {"name": t.name, "mode": t.mode, "shots": t.shots, "source": t.hf_source or None,
             "answer_rule": t.answer_rule if t.mode == "cloze" else None, "description": t.description}
            for t in TASKS.values()
        ]
        sys.stdout.write(json.dumps({"schema": "ggflip.tasks/1", "tasks": rows}, indent=1) + "\n")
        return int(ExitCode.OK)
    table = Table(title="ggflip tasks")
    for column in ("task", "mode", "shots", "source", "description"):
        table.add_column(column)
    for t in TASKS.values():
        mode = f"cloze ({t.answer_rule})" if t.mode == "cloze" else t.mode
        table.add_row(t.name, mode, str(t.shots), t.hf_source or "--data FILE", t.description)
    Console().print(table)
    return int(ExitCode.OK)


def prepare_demo_command(args: argparse.Namespace) -> int:
    """Build the Gemma 3 270M F16 and its quants into the cache, once."""
    from ggflip.demo_models import DEMO_QUANT_TYPES, describe, prepare_demo_models

    types = tuple(t.strip() for t in args.types.split(",")) if args.types else DEMO_QUANT_TYPES
    stderr = Console(stderr=True)
    paths = prepare_demo_models(types=types, progress=lambda message: stderr.print(message))
    print(describe(paths), file=sys.stderr)
    for label, path in paths.items():
        print(f"{label}\t{path}")
    return int(ExitCode.OK)


