"""`ggflip kld`: corpus mode from the command line: flags to a KldSpec, events to progress and a
report.

Owns no scoring logic: it resolves flags, iterates `corpus.run_kld`, draws progress on stderr
and prints either one JSON document (`--json`) or llama-perplexity-style tables on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ggflip.cli.run import emit_document, progress_bars
from ggflip.corpus.engine import (
    DEFAULT_CORPUS_TOP_K,
    DEFAULT_CTX,
    DEFAULT_TAIL_SAMPLES,
    partial_kld_report,
    run_kld,
)
from ggflip.corpus.events import (
    BaselineKld,
    BaselineKldFinished,
    ChunkScored,
    CorpusReady,
    KldFinished,
    KldReport,
    QuantKld,
    QuantKldFinished,
)
from ggflip.corpus.setup import KldOptions, resolve_kld_spec
from ggflip.corpus.stats import DP_PERCENTILES, KL_PERCENTILES
from ggflip.errors import ExitCode
from ggflip.runs.events import BASELINE, BaselineFromCache, ModelLoaded, ModelLoading


def add_kld_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `ggflip kld` and its flags."""
    kld = subparsers.add_parser(
        "kld",
        help="full-vocabulary KL, PPL and top-token agreement on a text, like llama-perplexity",
    )
    kld.add_argument(
        "--models",
        type=Path,
        default=Path("models.toml"),
        help="models file (default: ./models.toml)",
    )
    kld.add_argument(
        "--set", dest="set_name", help="comparison set in the models file (default: its only set)"
    )
    kld.add_argument(
        "--text",
        type=Path,
        required=True,
        help="UTF-8 text file to score (like llama-perplexity -f)",
    )
    kld.add_argument(
        "--ctx",
        type=int,
        default=DEFAULT_CTX,
        help=f"tokens per chunk; the second half is scored (default: {DEFAULT_CTX})",
    )
    kld.add_argument(
        "--chunks", type=int, help="score at most N chunks (default: every full chunk of the text)"
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
    kld.add_argument(
        "--cache-dir",
        type=Path,
        help="cache directory (default: $GGFLIP_CACHE_DIR or ~/.cache/ggflip)",
    )
    kld.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the baseline cache"
    )


def kld_options(args: argparse.Namespace) -> KldOptions:
    """`ggflip kld`'s parsed flags as the engine's typed options."""
    return KldOptions(
        text=args.text,
        models_path=args.models,
        set_name=args.set_name,
        ctx=args.ctx,
        chunks=args.chunks,
        top_k=args.top_k,
        tail_samples=args.tail_samples,
        cache_dir=args.cache_dir,
        no_cache=args.no_cache,
    )


def kld_command(args: argparse.Namespace) -> int:
    """Run corpus mode with progress on stderr; print the report (JSON or tables)."""
    from rich.progress import TaskID

    from ggflip.backends.llama import LlamaBackendFactory

    spec = resolve_kld_spec(kld_options(args))
    stderr = Console(stderr=True)
    events = run_kld(spec, LlamaBackendFactory())
    next(events)  # KldStarted: files and vocabularies are checked before progress is drawn
    baseline: BaselineKld | None = None
    quants: list[QuantKld] = []
    report: KldReport | None = None
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
                    n_chunks = event.n_chunks
                    baseline_chunks = n_chunks if event.from_cache else 0
                    if spec.chunks and event.n_chunks < spec.chunks:
                        stderr.print(
                            f"[yellow]the text holds only {event.n_chunks} chunks of {spec.ctx} "
                            "tokens[/yellow]"
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
        report = partial_kld_report(spec, baseline, quants, n_chunks, baseline_chunks)
        _emit(args, report)
        stderr.print(
            f"ggflip: error: interrupted; the report holds the {len(quants)} quant(s) that finished"
        )
        return int(ExitCode.INTERRUPTED)
    assert report is not None
    _emit(args, report)
    return int(ExitCode.OK)


def _emit(args: argparse.Namespace, report: KldReport) -> None:
    emit_document(args, report.to_json(), lambda console: render_kld_report(report, console))


def _pm(value: float, unc: float, digits: int = 4, scale: float = 1.0, suffix: str = "") -> str:
    return f"{scale * value:.{digits}f} ± {scale * unc:.{digits}f}{suffix}"


def render_kld_report(report: KldReport, console: Console) -> None:
    """A summary table per quant, then llama-perplexity's full statistics, one column per quant."""
    title = (
        f"ggflip kld: set {report.set}, {report.source}, {report.n_chunks} chunks × {report.ctx}, "
        f"{report.tokens_scored} tokens scored"
    )
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    summary = Table(title=title)
    for column in (
        "model",
        "PPL",
        "PPL ratio",
        "KL mean",
        "KL median",
        "KL p99",
        "RMS Δp",
        "same top",
        "accept",
        "accept p10",
    ):
        summary.add_column(column, justify="left" if column == "model" else "right")
    if report.baseline:
        b = report.baseline
        summary.add_row(
            f"{b.label} (baseline){' (cached)' if b.from_cache else ''}",
            _pm(b.ppl, b.ppl_unc, 3),
            *[""] * 8,
        )
    for q in report.quants:
        s = q.stats
        summary.add_row(
            q.label,
            _pm(s.ppl, s.ppl_unc, 3),
            _pm(s.ppl_ratio, s.ppl_ratio_unc),
            _pm(s.kl_mean, s.kl_mean_unc, 5),
            f"{s.kl_median:.5f}",
            f"{s.kl_percentiles['kl_p99']:.4f}",
            _pm(s.dp_rms, s.dp_rms_unc, 3, 100, "%"),
            _pm(s.same_top, s.same_top_unc, 2, 100, "%"),
            _pm(s.acceptance_mean, s.acceptance_mean_unc, 2, 100, "%"),
            f"{100 * s.acceptance_p10:.2f}%",
        )
    console.print(summary)
    if not report.quants:
        return
    detail = Table(title="llama-perplexity statistics", show_edge=False)
    detail.add_column("statistic")
    for q in report.quants:
        detail.add_column(q.label, justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("Mean PPL(Q)", [_pm(q.stats.ppl, q.stats.ppl_unc, 6) for q in report.quants]),
        ("Mean PPL(base)", [_pm(q.stats.ppl_base, q.stats.ppl_base_unc, 6) for q in report.quants]),
        (
            "Cor(ln PPL(Q), ln PPL(base))",
            [f"{100 * q.stats.ll_correlation:.2f}%" for q in report.quants],
        ),
        (
            "Mean ln(PPL(Q)/PPL(base))",
            [_pm(q.stats.ln_ppl_ratio, q.stats.ln_ppl_ratio_unc, 6) for q in report.quants],
        ),
        (
            "Mean PPL(Q)/PPL(base)",
            [_pm(q.stats.ppl_ratio, q.stats.ppl_ratio_unc, 6) for q in report.quants],
        ),
        (
            "Mean PPL(Q)-PPL(base)",
            [_pm(q.stats.ppl_diff, q.stats.ppl_diff_unc, 6) for q in report.quants],
        ),
        ("Mean KLD", [_pm(q.stats.kl_mean, q.stats.kl_mean_unc, 6) for q in report.quants]),
        ("Maximum KLD", [f"{q.stats.kl_max:.6f}" for q in report.quants]),
    ]
    for pct in KL_PERCENTILES:
        key = f"kl_p{pct:g}".replace(".", "_")
        name = "Median KLD" if pct == 10.0 else None
        if name:
            rows.append((name, [f"{q.stats.kl_median:.6f}" for q in report.quants]))
        rows.append(
            (f"{pct:.1f}% KLD", [f"{q.stats.kl_percentiles[key]:.6f}" for q in report.quants])
        )
    rows.append(("Minimum KLD", [f"{q.stats.kl_min:.6f}" for q in report.quants]))
    rows.append(
        ("Mean Δp", [_pm(q.stats.dp_mean, q.stats.dp_mean_unc, 3, 100, "%") for q in report.quants])
    )
    rows.append(("Maximum Δp", [f"{100 * q.stats.dp_max:.3f}%" for q in report.quants]))
    for pct in DP_PERCENTILES:
        key = f"dp_p{pct:g}".replace(".", "_")
        if pct == 25.0:
            rows.append(("Median Δp", [f"{100 * q.stats.dp_median:.3f}%" for q in report.quants]))
        rows.append(
            (f"{pct:.1f}% Δp", [f"{100 * q.stats.dp_percentiles[key]:.3f}%" for q in report.quants])
        )
    rows.append(("Minimum Δp", [f"{100 * q.stats.dp_min:.3f}%" for q in report.quants]))
    rows.append(
        ("RMS Δp", [_pm(q.stats.dp_rms, q.stats.dp_rms_unc, 3, 100, "%") for q in report.quants])
    )
    rows.append(
        (
            "Same top p",
            [_pm(q.stats.same_top, q.stats.same_top_unc, 3, 100, "%") for q in report.quants],
        )
    )
    rows.append(
        (
            "Acceptance Σmin(p,q) (upper bound)",
            [
                _pm(q.stats.acceptance_mean, q.stats.acceptance_mean_unc, 3, 100, "%")
                for q in report.quants
            ],
        )
    )
    for name, cells in rows:
        detail.add_row(name, *cells)
    console.print(detail)
    if report.cache:
        c = report.cache
        console.print(
            f"baseline kept as top {c.top_k} + tail mass + {c.tail_samples} tail draws: "
            f"{c.bytes_per_token} B/token ({c.size_ratio:.0f}× smaller than llama-perplexity's "
            f"{c.llama_cpp_bytes_per_token} B/token), {c.file_bytes / 1e6:.1f} MB; mean tail mass "
            f"{c.tail_mass_mean:.2e}"
        )
    for q in report.quants:
        if q.tail:
            console.print(
                f"{q.label}: KL mean {q.stats.kl_mean:.6f} = {q.tail.kl_mean_lower_bound:.6f} (top "
                f"{report.cache.top_k if report.cache else '?'} + merged tail, a lower bound) + "
                f"{q.tail.kl_tail_estimate:.6f} ± {q.tail.kl_tail_estimate_unc:.6f} (tail estimate)"
            )
