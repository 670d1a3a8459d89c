"""`ggflip kld`: corpus mode from the command line: flags to a KldSpec, events to progress and a
report.

Owns no scoring logic: it resolves flags, iterates `corpus.run_kld`, draws progress on stderr
and prints either one JSON document (`--json`) or llama-perplexity-style tables on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ggflip.cli.run import emit_document, progress_bars
from ggflip.cli.scoring_flags import (
    add_cache_flags,
    add_model_flags,
    add_scoring_flags,
    add_text_flags,
)
from ggflip.corpus.engine import partial_kld_report, run_kld
from ggflip.corpus.events import (
    BaselineKld,
    BaselineKldFinished,
    ChunkScored,
    CorpusReady,
    KldFinished,
    KldReport,
    QuantKld,
    QuantKldFinished,
    TextInfo,
)
from ggflip.corpus.setup import kld_options, resolve_kld_spec
from ggflip.corpus.spec import DEFAULT_CORPUS_TOP_K, DEFAULT_TAIL_SAMPLES
from ggflip.errors import ExitCode
from ggflip.reports.corpus import render_kld_markdown, render_kld_report
from ggflip.runs.events import BASELINE, BaselineFromCache, ModelLoaded, ModelLoading
from ggflip.store.atomic import atomic_write_bytes


def add_kld_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `ggflip kld` and its flags."""
    kld = subparsers.add_parser(
        "kld",
        help="full-vocabulary KL, PPL and top-token agreement on a text, like llama-perplexity",
    )
    add_model_flags(kld)
    add_text_flags(
        kld,
        "UTF-8 text file to score (like llama-perplexity -f), or a folder: each file a "
        "category, chunked on its own (repeatable)",
        required=True,
    )
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
    kld.add_argument(
        "--json", action="store_true", help="write the report as one JSON document on stdout"
    )
    kld.add_argument("--out", type=Path, help="also write the JSON report to this file")
    kld.add_argument("--markdown", type=Path, help="also write the report as Markdown to this file")
    add_cache_flags(kld, "neither read nor write the baseline cache")
    add_scoring_flags(kld)


def kld_command(args: argparse.Namespace) -> int:
    """Run corpus mode with progress on stderr; print the report (JSON or tables)."""
    from rich.progress import TaskID

    from ggflip.backends.registry import backend_factory

    spec = resolve_kld_spec(kld_options(args))
    stderr = Console(stderr=True)
    events = run_kld(spec, backend_factory(spec.model_set))
    next(events)  # KldStarted: files and vocabularies are checked before progress is drawn
    baseline: BaselineKld | None = None
    quants: list[QuantKld] = []
    report: KldReport | None = None
    texts: tuple[TextInfo, ...] = ()
    n_chunks = baseline_chunks = 0
    try:
        with progress_bars(stderr) as progress:
            bars: dict[str, TaskID] = {}
            for event in events:
                if isinstance(event, ModelLoading):
                    bars[event.label] = progress.add_task(
                        f"{event.label} ({event.role}) loading", total=None
                    )
                elif isinstance(event, ModelLoaded):
                    progress.update(bars[event.label], description=f"{event.label} ({event.role})")
                elif isinstance(event, BaselineFromCache):
                    stderr.print(
                        f"[dim]{event.label}: baseline from cache ({event.cache_path})[/dim]"
                    )
                elif isinstance(event, CorpusReady):
                    texts, n_chunks = event.texts, event.n_chunks
                    baseline_chunks = n_chunks if event.from_cache else 0
                    for text in texts:
                        if spec.chunks and text.n_chunks < spec.chunks:
                            stderr.print(
                                f"[yellow]{text.source} holds only {text.n_chunks} chunks of "
                                f"{spec.ctx} tokens[/yellow]"
                            )
                elif isinstance(event, ChunkScored):
                    if event.role == BASELINE:
                        baseline_chunks = event.chunk + 1
                    progress.update(
                        bars[event.label], completed=event.chunk + 1, total=event.n_chunks
                    )
                elif isinstance(event, BaselineKldFinished):
                    baseline = event.summary
                elif isinstance(event, QuantKldFinished):
                    quants.append(event.summary)
                elif isinstance(event, KldFinished):
                    report = event.report
    except KeyboardInterrupt:
        events.close()
        report = partial_kld_report(spec, baseline, quants, n_chunks, baseline_chunks, texts)
        _emit(args, report)
        stderr.print(
            f"ggflip: error: interrupted; the report holds the {len(quants)} quant(s) that finished"
        )
        return int(ExitCode.INTERRUPTED)
    assert report is not None
    _emit(args, report)
    return int(ExitCode.OK)


def _emit(args: argparse.Namespace, report: KldReport) -> None:
    if args.markdown:
        atomic_write_bytes(args.markdown, render_kld_markdown(report).encode())
    emit_document(args, report.to_json(), lambda console: render_kld_report(report, console))
