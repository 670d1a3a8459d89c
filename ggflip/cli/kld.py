"""`ggflip kld`: corpus mode from the command line: flags to a KldSpec, events to progress and a
report.

Owns no scoring logic: it resolves flags, follows `corpus.run_kld` through its fold
(`cli.progress.follow_run`) and prints either one JSON document (`--json`) or
llama-perplexity-style tables on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ggflip.backends.base import BackendFactory
from ggflip.cli.consoles import console
from ggflip.cli.gates import fail_if_gates, gated, keeping
from ggflip.cli.progress import follow_run
from ggflip.cli.run import emit_document
from ggflip.cli.scoring_flags import (
    add_cache_flags,
    add_calibration_flag,
    add_model_flags,
    add_quant_settings_flag,
    add_scoring_flags,
    add_text_flags,
    add_verdict_flags,
    margins,
)
from ggflip.config.models_toml import default_cache_dir
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import KldReport
from ggflip.corpus.fold import CorpusFold
from ggflip.corpus.report import MODE
from ggflip.corpus.setup import KldOptions, kld_options, resolve_kld_spec
from ggflip.corpus.spec import DEFAULT_CORPUS_TOP_K, DEFAULT_TAIL_SAMPLES, KldSpec
from ggflip.errors import UsageError
from ggflip.reports.corpus import render_kld_markdown, render_kld_report
from ggflip.store.atomic import atomic_write_bytes


def add_kld_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `ggflip kld` and its flags."""
    kld = subparsers.add_parser(
        "kld",
        help="full-vocabulary KL, PPL and top-token agreement on a text, like llama-perplexity",
    )
    add_model_flags(kld)
    add_quant_settings_flag(kld)
    add_text_flags(
        kld,
        "UTF-8 text file to score (like llama-perplexity -f), or a folder: each file a "
        "category, chunked on its own (repeatable; not with --llama-base)",
        required=False,
    )
    add_llama_base_flags(kld)
    kld.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_CORPUS_TOP_K,
        help=f"baseline tokens kept per scored token (default: {DEFAULT_CORPUS_TOP_K})",
    )
    kld.add_argument(
        "--tail-samples",
        type=int,
        default=DEFAULT_TAIL_SAMPLES,
        help=(
            "baseline tail draws kept per scored token for the KL tail estimate (default: "
            f"{DEFAULT_TAIL_SAMPLES})"
        ),
    )
    add_calibration_flag(kld, "texts")
    kld.add_argument(
        "--json", action="store_true", help="write the report as one JSON document on stdout"
    )
    kld.add_argument("--out", type=Path, help="also write the JSON report to this file")
    kld.add_argument("--markdown", type=Path, help="also write the report as Markdown to this file")
    add_cache_flags(kld, "neither read nor write the baseline cache")
    add_scoring_flags(kld)
    add_verdict_flags(kld, answers=False)


def kld_command(args: argparse.Namespace) -> int:
    """Run corpus mode with progress on stderr; print the report (JSON or tables)."""
    from ggflip.backends.registry import backend_factory

    gates = fail_if_gates(args, MODE)
    options = dataclasses.replace(kld_options(args), margins=margins(args))
    if args.llama_base is not None:
        spec, factory = _llama_base_run(args, options)
    elif not options.texts:
        raise UsageError("give --text FILE or folder (or --llama-base FILE)")
    elif args.quant:
        raise UsageError("--quant goes with --llama-base; name a set's quants in models.toml")
    else:
        spec = resolve_kld_spec(options)
        factory = backend_factory(spec.model_set)
    events = run_kld(spec, factory)
    next(events)  # KldStarted: files and vocabularies are checked before progress is drawn
    fold = CorpusFold(spec, time.monotonic)
    reports: list[KldReport] = []
    emit = keeping(lambda report: _emit(args, report), reports)
    code = follow_run(events, fold, console(stderr=True), emit)
    return gated(code, gates, reports[-1].to_dict() if reports else None)


def add_llama_base_flags(parser: argparse.ArgumentParser) -> None:
    """`--llama-base FILE` and `--quant FILE` (repeatable)."""
    parser.add_argument(
        "--llama-base",
        type=Path,
        metavar="FILE",
        help=(
            "compare against a llama-perplexity --kl-divergence-base file instead of a baseline "
            "GGUF (its text, chunks and context come from the file; imported once into the cache)"
        ),
    )
    parser.add_argument(
        "--quant",
        action="append",
        default=[],
        help="with --llama-base: a quant GGUF, folder, glob or hf:// reference (repeatable)",
    )


def _llama_base_run(
    args: argparse.Namespace, options: KldOptions
) -> tuple[KldSpec, BackendFactory]:
    """The run of `--llama-base`, reporting the import's progress on stderr."""
    from ggflip.packs.llama_base import llama_base_run

    stderr = console(stderr=True)
    options = dataclasses.replace(
        options, cache_dir=None if options.no_cache else options.cache_dir or default_cache_dir()
    )

    def imported(done: int, total: int) -> None:
        stderr.print(
            f"importing {args.llama_base.name}: chunk {done}/{total}", style="dim", markup=False
        )

    spec, factory = llama_base_run(args.llama_base, options, args.quant, imported)
    return spec, factory


def _emit(args: argparse.Namespace, report: KldReport) -> None:
    if args.markdown:
        atomic_write_bytes(args.markdown, render_kld_markdown(report).encode())
    emit_document(args, report.to_json(), lambda console: render_kld_report(report, console))
