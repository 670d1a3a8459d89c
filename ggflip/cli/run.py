"""`ggflip run` and `ggflip prepare-demo`: build a RunSpec from flags, follow the engine's run.

This module owns no scoring logic: it resolves flags into a `RunSpec`, hands
`engine.run_comparison`'s events to `cli.progress.follow_run` (which reads them through the
mode's fold) and renders the `Report`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

from rich.console import Console

from ggflip.backends.base import BackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.fold import ChoiceFold
from ggflip.choice.report import MODE, Report
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.choice.spec import RunSpec
from ggflip.cli.consoles import console
from ggflip.cli.gates import fail_if_gates, gated, keeping
from ggflip.cli.progress import follow_run
from ggflip.cli.scoring_flags import margins, scoring_threads
from ggflip.errors import ExitCode, UsageError
from ggflip.reports.choice import render_report
from ggflip.store.atomic import atomic_write_bytes

log = logging.getLogger("ggflip")


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run flags as RunOptions."""
    return RunOptions(
        models_path=args.models,
        set_name=args.set_name,
        baseline=getattr(args, "baseline", None),
        quants=tuple(getattr(args, "quant", ())),
        quant_settings=tuple(getattr(args, "quant_settings", None) or ()),
        task=args.task or "mmlu",  # resolved by `run` already; the default for a bare parse
        task_file=getattr(args, "task_file", None),
        fields=tuple(getattr(args, "field", ())),
        mode=getattr(args, "mode", None),
        shots=getattr(args, "shots", None),
        shots_from=getattr(args, "shots_from", None),
        data=args.data,
        limit=args.limit,
        seed=args.seed,
        first=args.first,
        subjects=tuple(args.subject),
        skip_bad_rows=args.skip_bad_rows,
        cache_dir=args.cache_dir,
        no_cache=args.no_cache,
        top_k=args.top_k,
        tail_samples=getattr(args, "tail_samples", None),
        batch_size=args.batch_size or (0 if getattr(args, "baseline_pack", None) else 4),
        resume=not getattr(args, "no_resume", False),
        prefix_reuse=not getattr(args, "no_prefix_reuse", False),
        floor=bool(getattr(args, "floor", False)),
        scoring_threads=scoring_threads(args),
        margins=margins(args),
        calibration=tuple(getattr(args, "calibration", None) or ()),
    )


def build_run_spec(args: argparse.Namespace) -> RunSpec:
    """Resolve the run flags into a RunSpec (models, questions, cache).

    Raises:
        UsageError, ConfigError, DataError: for bad flags, settings or questions.
    """
    spec = resolve_run_spec(run_options(args))
    args.set_name = spec.model_set.name
    return spec


def choice_from_pack(args: argparse.Namespace) -> tuple[RunSpec, BackendFactory]:
    """The run of `--baseline-pack` (`packs.choice.choice_run_from_pack`), its factory the
    pack's over the registry's."""
    from ggflip.packs.baseline import open_mode_pack
    from ggflip.packs.choice import MODE as PACK_MODE
    from ggflip.packs.choice import choice_run_from_pack

    pack = open_mode_pack(args.baseline_pack, PACK_MODE)
    spec, factory = choice_run_from_pack(
        pack, run_options(args), args.task_given, args.allow_numerics_mismatch
    )
    args.set_name = spec.model_set.name
    return spec, factory


def run_command(args: argparse.Namespace) -> int:
    """Run a comparison, showing progress on stderr; print the report (JSON or tables)."""
    from ggflip.backends.registry import backend_factory

    gates = fail_if_gates(args, MODE)
    if any(gate.name == "verdict" for gate in gates) and not getattr(args, "floor", False):
        raise UsageError("--fail-if verdict=... needs --floor: the verdict is against the floor")
    if getattr(args, "baseline_pack", None):
        spec, factory = choice_from_pack(args)
    else:
        spec = build_run_spec(args)
        factory = backend_factory(spec.model_set)
    stderr = console(stderr=True)
    events = run_comparison(spec, factory)
    next(events)  # RunStarted: every file and vocabulary is checked before progress is drawn
    # Which questions a --limit took decides what the numbers mean: say it before scoring.
    stderr.print(f"questions: {spec.questions.selection}", style="dim", markup=False)
    reports: list[Report] = []
    emit = keeping(lambda report: _emit(args, report), reports)
    code = follow_run(events, ChoiceFold(spec, time.monotonic), stderr, emit)
    return gated(code, gates, reports[-1].to_dict() if reports else None)


def emit_document(
    args: argparse.Namespace, document: str, render: Callable[[Console], None]
) -> None:
    """Write a report: to `--out` (atomically), then as the one JSON document on stdout, or
    rendered."""
    if args.out:
        atomic_write_bytes(args.out, document.encode())
    if args.json:
        sys.stdout.write(document + "\n")
        sys.stdout.flush()
    else:
        render(console())


def _emit(args: argparse.Namespace, report: Report) -> None:
    emit_document(
        args, report.to_json(), lambda console: render_report(report, console, flip_rows=args.rows)
    )


def tasks_command(args: argparse.Namespace) -> int:
    """Print the built-in tasks: name, answer mode, shots, default source, description."""
    import json

    from rich.table import Table

    from ggflip.tasks.generation import EMBEDDED_SOURCE, GEN_TASKS
    from ggflip.tasks.registry import TASKS

    rows = [
        {
            "name": t.name,
            "mode": t.mode,
            "shots": t.shots,
            "source": t.hf_source or None,
            "answer_rule": t.answer_rule if t.mode == "cloze" else None,
            "description": t.description,
        }
        for t in TASKS.values()
    ]
    rows += [
        {
            "name": t.name,
            "mode": "generate",
            "shots": t.shots,
            "source": t.hf_source or (EMBEDDED_SOURCE if t.kind == "prompts" else None),
            "answer_rule": t.answer_rule,
            "description": t.description,
        }
        for t in GEN_TASKS.values()
    ]
    if args.json:
        sys.stdout.write(json.dumps({"schema": "ggflip.tasks/1", "tasks": rows}, indent=1) + "\n")
        return int(ExitCode.OK)
    table = Table(title="ggflip tasks")
    for column in ("task", "mode", "shots", "source", "description"):
        table.add_column(column)
    for row in rows:
        mode = f"{row['mode']} ({row['answer_rule']})" if row["answer_rule"] else row["mode"]
        source = row["source"] or "--data FILE"
        table.add_row(
            str(row["name"]), str(mode), str(row["shots"]), str(source), str(row["description"])
        )
    console().print(table)
    return int(ExitCode.OK)


def prepare_demo_command(args: argparse.Namespace) -> int:
    """Build the Gemma 3 270M F16 and its quants into the cache, once."""
    from ggflip.demo.models import DEMO_QUANT_TYPES, describe, prepare_demo_models

    types = tuple(t.strip() for t in args.types.split(",")) if args.types else DEMO_QUANT_TYPES
    stderr = console(stderr=True)
    paths = prepare_demo_models(types=types, progress=lambda message: stderr.print(message))
    print(describe(paths), file=sys.stderr)
    for label, path in paths.items():
        print(f"{label}\t{path}")
    return int(ExitCode.OK)
