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
from typing import Any

from ggflip.backends.base import BackendFactory
from ggflip.cli.consoles import console
from ggflip.cli.gates import fail_if_gates, gated, keeping
from ggflip.cli.progress import follow_run
from ggflip.cli.run import emit_document
from ggflip.cli.scoring_flags import (
    add_cache_flags,
    add_calibration_flag,
    add_model_flags,
    add_pack_flags,
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
from ggflip.corpus.setup import kld_options, resolve_kld_spec
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
        "category, chunked on its own (repeatable; with --baseline-pack: the pack's texts)",
        required=False,
    )
    kld.add_argument(
        "--quant",
        action="append",
        default=[],
        help="with --baseline-pack or --llama-base: a quant GGUF, folder, glob or hf:// "
        "reference (repeatable)",
    )
    add_pack_flags(kld)
    kld.add_argument(
        "--llama-base",
        type=Path,
        metavar="FILE",
        help="compare against a llama-perplexity --kl-divergence-base file instead of a baseline "
        "GGUF: imported once into a pack in the cache, then as --baseline-pack (its chunks and "
        "context are the file's)",
    )
    kld.add_argument(
        "--top-k",
        type=int,
        help=f"baseline tokens kept per scored token (default: {DEFAULT_CORPUS_TOP_K})",
    )
    kld.add_argument(
        "--tail-samples",
        type=int,
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
    if args.llama_base is not None:
        spec, factory = _from_llama_base(args)
    elif args.baseline_pack:
        spec, factory = _from_pack(args)
    else:
        if not args.text or args.quant:
            raise UsageError(
                "give --text FILE (--quant goes with --baseline-pack; models.toml names the rest)"
            )
        spec = resolve_kld_spec(dataclasses.replace(kld_options(args), margins=margins(args)))
        factory = backend_factory(spec.model_set)
    events = run_kld(spec, factory)
    next(events)  # KldStarted: files and vocabularies are checked before progress is drawn
    fold = CorpusFold(spec, time.monotonic)
    reports: list[KldReport] = []
    emit = keeping(lambda report: _emit(args, report), reports)
    code = follow_run(events, fold, console(stderr=True), emit)
    return gated(code, gates, reports[-1].to_dict() if reports else None)


def _from_pack(args: argparse.Namespace) -> tuple[KldSpec, BackendFactory]:
    """`kld --baseline-pack`: the run against the pack's baseline (`packs.corpus`)."""
    from ggflip.packs.baseline import open_mode_pack
    from ggflip.packs.corpus import MODE as PACK_MODE
    from ggflip.packs.corpus import corpus_run_from_pack

    pack = open_mode_pack(args.baseline_pack, PACK_MODE)
    fields, models = _pack_fields(args)
    return corpus_run_from_pack(
        pack, fields, tuple(args.quant), models, args.allow_numerics_mismatch
    )


def _from_llama_base(args: argparse.Namespace) -> tuple[KldSpec, BackendFactory]:
    """`kld --llama-base FILE`: the file's pack in the cache (imported on first use, with its
    progress on stderr), then the run against it as against any pack."""
    from ggflip.cli.baseline import import_progress
    from ggflip.packs.corpus import corpus_run_from_pack
    from ggflip.packs.llama_base import llama_base_pack

    if args.baseline_pack:
        raise UsageError("--llama-base and --baseline-pack are alternatives: give one baseline")
    if args.text:
        raise UsageError("--llama-base holds its text (as token ids); drop --text")
    fields, models = _pack_fields(args)
    if fields["cache_dir"] is None:
        raise UsageError("--llama-base imports the file into the cache; drop --no-cache")
    shape = (
        DEFAULT_CORPUS_TOP_K if args.top_k is None else args.top_k,
        DEFAULT_TAIL_SAMPLES if args.tail_samples is None else args.tail_samples,
    )
    progress = import_progress(args.llama_base)
    pack = llama_base_pack(
        args.llama_base, tuple(args.quant), models, fields["cache_dir"], shape, progress
    )
    return corpus_run_from_pack(pack, fields, tuple(args.quant), models)


def _pack_fields(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], tuple[Path, str | None, tuple[str, ...]]]:
    """The `KldSpec` fields a run from a pack takes from the flags (None: the pack's), and the
    models file, set and `--quant-settings`."""
    options = kld_options(args)
    fields = {
        "texts": tuple(args.text or ()),
        "ctx": args.ctx,
        "chunks": args.chunks,
        "score_from": args.score_from,
        "top_k": args.top_k,
        "tail_samples": args.tail_samples,
        "cache_dir": None if options.no_cache else (options.cache_dir or default_cache_dir()),
        "scoring_threads": options.scoring_threads,
        "margins": margins(args),
        "calibration": options.calibration,
    }
    return fields, (options.models_path, options.set_name, options.quant_settings)


def _emit(args: argparse.Namespace, report: KldReport) -> None:
    if args.markdown:
        atomic_write_bytes(args.markdown, render_kld_markdown(report).encode())
    emit_document(args, report.to_json(), lambda console: render_kld_report(report, console))
