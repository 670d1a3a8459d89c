"""`ggflip run --task gsm8k|prompts|mt_bench`: the generation mode from the command line.

Owns no generation logic: it turns its flags into `GenOptions`, resolves them into a `GenSpec`
(as the TUI does), follows `generate.run_generation` through its fold
(`cli.progress.follow_run`) and prints one JSON document (`--json`) or a summary table.
"""

from __future__ import annotations

import argparse
import sys
import time

from ggflip.backends.base import BackendFactory
from ggflip.cli.consoles import console
from ggflip.cli.gates import fail_if_gates, gated, keeping
from ggflip.cli.progress import follow_run
from ggflip.cli.run import emit_document
from ggflip.cli.scoring_flags import margins, scoring_threads
from ggflip.generate.engine import run_generation
from ggflip.generate.fold import GenFold
from ggflip.generate.report import MODE, GenReport
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.reports.generation import render_gen_report


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
        quant_settings=tuple(getattr(args, "quant_settings", None) or ()),
        chat=bool(getattr(args, "chat", False)),
        system=getattr(args, "system", None),
        max_new_tokens=getattr(args, "max_new_tokens", None),
        batch_size=args.batch_size or (0 if getattr(args, "baseline_pack", None) else 4),
        top_k=getattr(args, "top_k", None),
        cache_dir=args.cache_dir,
        no_cache=args.no_cache,
        resume=not getattr(args, "no_resume", False),
        scoring_threads=scoring_threads(args),
        margins=margins(args),
    )


def generate_command(args: argparse.Namespace, announce: bool = False) -> int:
    """Run a generation comparison with progress on stderr; print the report (`announce`: say
    first that `run` took the generation mode for this task)."""
    from ggflip.backends.registry import backend_factory

    if announce:
        print(
            f"ggflip: {args.task} is a generation task: comparing greedy generations turn by "
            "turn (generation mode)",
            file=sys.stderr,
        )

    gates = fail_if_gates(args, MODE)
    factory: BackendFactory
    if getattr(args, "baseline_pack", None):
        from ggflip.packs.baseline import open_mode_pack
        from ggflip.packs.generate import MODE as PACK_MODE
        from ggflip.packs.generate import gen_run_from_pack

        pack = open_mode_pack(args.baseline_pack, PACK_MODE)
        spec, factory = gen_run_from_pack(
            pack, gen_options(args), args.task_given, args.allow_numerics_mismatch
        )
    else:
        spec = resolve_gen_spec(gen_options(args))
        factory = backend_factory(spec.model_set)
    stderr = console(stderr=True)
    events = run_generation(spec, factory)
    next(events)  # GenStarted: files and vocabularies are checked before progress is drawn
    # Which prompts a --limit took decides what the numbers mean: say it before generating.
    stderr.print(f"prompts: {spec.selection}", style="dim", markup=False)
    fold = GenFold(spec, time.monotonic)
    reports: list[GenReport] = []
    code = follow_run(events, fold, stderr, keeping(lambda report: _emit(args, report), reports))
    return gated(code, gates, reports[-1].to_dict() if reports else None)


def _emit(args: argparse.Namespace, report: GenReport) -> None:
    emit_document(args, report.to_json(), lambda console: render_gen_report(report, console))
