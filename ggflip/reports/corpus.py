"""A corpus report (`ggflip kld`) as terminal tables and as Markdown: the tables declared here,
written by `ggflip.reports.tables`.

Over the whole corpus: a summary table (PPL, KL, same top, acceptance per model) and
llama-perplexity's full statistics, one column per quant. With several texts, the same two
tables again for each text (its category), whose numbers are those of a run on that text alone.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from ggflip.corpus.positions import PositionBucket, bucket_label
from ggflip.corpus.report import KldReport
from ggflip.corpus.stats import DP_PERCENTILES, KL_PERCENTILES, KldStats
from ggflip.reports import notes, tables
from ggflip.reports.equivalence import equivalence_table
from ggflip.reports.frontier import frontier_html, frontier_markdown, render_frontier
from ggflip.reports.tables import (
    Column,
    Table,
    calibration_lines,
    html_page,
    metric_column,
    model_lines,
    to_html,
    to_markdown,
    to_rich,
)
from ggflip.scoring import formats, metrics
from ggflip.scoring.formats import sig_pm
from ggflip.tasks.calibration import same_text_note

MODE = "corpus"


def _pm(value: float, unc: float, digits: int = 4, scale: float = 1.0, suffix: str = "") -> str:
    return f"{scale * value:.{digits}f} ± {scale * unc:.{digits}f}{suffix}"


def _pct_pm(name: str, digits: int) -> Column:
    """A rate ± its uncertainty in percent, from a summary's `name` and `name_unc`."""
    return Column(
        metrics.metric(name).label,
        lambda s: _pm(s[name], s[f"{name}_unc"], digits, 100, "%"),
        name,
    )


SUMMARY_COLUMNS = [
    Column("model", lambda s: s["label"]),
    Column("PPL", lambda s: _pm(s["ppl"], s["ppl_unc"], 3), "ppl"),
    Column("PPL ratio", lambda s: _pm(s["ppl_ratio"], s["ppl_ratio_unc"]), "ppl_ratio"),
    Column("KL mean", lambda s: sig_pm(s["kl_mean"], s["kl_mean_unc"]), "kl_mean"),
    metric_column("kl_median"),
    metric_column("kl_p99"),
    _pct_pm("dp_rms", 3),
    _pct_pm("same_top", 2),
    _pct_pm("acceptance_mean", 2),
    Column("accept p10", lambda s: formats.pct(s["acceptance_p10"], 2), "acceptance_p10"),
]
SUMMARY_HEADER = [c.label for c in SUMMARY_COLUMNS]


def summary_table(report: KldReport, category: str | None = None, title: str = "") -> Table:
    """The baseline's row (PPL) then one row per quant, over the corpus or over one category."""
    lead: list[list[str]] = []
    if report.baseline:
        b = report.baseline
        ppl, unc = b.ppl, b.ppl_unc
        if category is not None:
            own = next(c for c in b.by_category if c.name == category)
            ppl, unc = own.ppl, own.ppl_unc
        note = " (cached)" if b.from_cache else ""
        lead.append([f"{b.label} (baseline){note}", _pm(ppl, unc, 3)])
    return tables.summary_table(title, MODE, SUMMARY_COLUMNS, _summaries_of(report, category), lead)


def summary_rows(report: KldReport, category: str | None = None) -> list[list[str]]:
    """The summary table's rows (`summary_table`)."""
    return summary_table(report, category).rows


def _summaries_of(report: KldReport, category: str | None) -> list[dict[str, Any]]:
    """Each quant's summary as its JSON dict (label included), over the corpus or one category."""
    if category is None:
        return [q.to_dict() for q in report.quants]
    return [
        {"label": q.label, **next(c for c in q.by_category if c.name == category).to_dict()}
        for q in report.quants
    ]


def _stats_of(report: KldReport, category: str | None) -> list[KldStats]:
    """Each quant's statistics, over the corpus or over one category."""
    if category is None:
        return [q.stats for q in report.quants]
    return [next(c.stats for c in q.by_category if c.name == category) for q in report.quants]


def detail_rows(stats: Sequence[KldStats]) -> list[list[str]]:
    """llama-perplexity's statistics in its order, one cell per quant after the name."""
    rows: list[list[str]] = [
        ["Mean PPL(Q)", *[_pm(s.ppl, s.ppl_unc, 6) for s in stats]],
        ["Mean PPL(base)", *[_pm(s.ppl_base, s.ppl_base_unc, 6) for s in stats]],
        ["Cor(ln PPL(Q), ln PPL(base))", *[f"{100 * s.ll_correlation:.2f}%" for s in stats]],
        ["Mean ln(PPL(Q)/PPL(base))", *[_pm(s.ln_ppl_ratio, s.ln_ppl_ratio_unc, 6) for s in stats]],
        ["Mean PPL(Q)/PPL(base)", *[_pm(s.ppl_ratio, s.ppl_ratio_unc, 6) for s in stats]],
        ["Mean PPL(Q)-PPL(base)", *[_pm(s.ppl_diff, s.ppl_diff_unc, 6) for s in stats]],
    ]
    flat = [s.to_dict() for s in stats]
    rows += _spread_rows(flat, "kl", "KLD", KL_PERCENTILES, 10.0, (6, 1.0, ""))
    rows += _spread_rows(flat, "dp", "Δp", DP_PERCENTILES, 25.0, (3, 100.0, "%"))
    rows.append(["RMS Δp", *[_pm(s.dp_rms, s.dp_rms_unc, 3, 100, "%") for s in stats]])
    rows.append(["Same top p", *[_pm(s.same_top, s.same_top_unc, 3, 100, "%") for s in stats]])
    rows.append(
        [
            "Acceptance Σmin(p,q) (upper bound)",
            *[_pm(s.acceptance_mean, s.acceptance_mean_unc, 3, 100, "%") for s in stats],
        ]
    )
    return rows


def _spread_rows(
    flat: Sequence[dict[str, Any]],
    prefix: str,
    label: str,
    percentiles: Sequence[float],
    median_before: float,
    shown: tuple[int, float, str],
) -> list[list[str]]:
    """Mean ± uncertainty, maximum, percentiles (the median before `median_before`) and minimum
    of one per-token quantity, in llama-perplexity's order; `shown` is (digits, scale, suffix)."""
    digits, scale, suffix = shown

    def row(name: str, key: str) -> list[str]:
        return [name, *[f"{scale * s[f'{prefix}_{key}']:.{digits}f}{suffix}" for s in flat]]

    means = [_pm(s[f"{prefix}_mean"], s[f"{prefix}_mean_unc"], digits, scale, suffix) for s in flat]
    rows = [[f"Mean {label}", *means], row(f"Maximum {label}", "max")]
    for pct in percentiles:
        if pct == median_before:
            rows.append(row(f"Median {label}", "median"))
        rows.append(row(f"{pct:.1f}% {label}", f"p{pct:g}".replace(".", "_")))
    rows.append(row(f"Minimum {label}", "min"))
    return rows


def _title(report: KldReport) -> str:
    title = (
        f"ggflip kld: set {report.set}, {report.source}, {report.n_chunks} chunks × {report.ctx}, "
        f"{report.tokens_scored} tokens scored"
    )
    return title + (" (INCOMPLETE: stopped early)" if not report.complete else "")


def _sections(report: KldReport) -> list[tuple[str | None, str]]:
    """(category or None for the whole corpus, its heading), the corpus first; a category per
    text only when there are several."""
    sections: list[tuple[str | None, str]] = [(None, "whole corpus")]
    if len(report.texts) > 1:
        for text in report.texts:
            heading = f"{text.name}: {text.n_chunks} chunks, {text.tokens_scored} tokens scored"
            sections.append((text.name, heading))
    return sections


def position_table(report: KldReport) -> Table | None:
    """KL by position: a line per quant, a column per position bucket holding scored tokens
    (`ggflip.corpus.positions`), each cell KL mean · same top · PPL ratio; None without quants."""
    if not report.quants or not report.quants[0].by_position:
        return None
    buckets = [(b.lo, b.hi, b.n_tokens) for b in report.quants[0].by_position]
    header = ["model", *(f"{bucket_label(lo, hi)} ({n:,} tok)" for lo, hi, n in buckets)]
    rows = [[q.label, *map(_position_cell, q.by_position)] for q in report.quants]
    return Table("KL by position in the chunk: KL mean · same top · PPL ratio", header, rows)


def _position_cell(bucket: PositionBucket) -> str:
    return f"{bucket.kl_mean:.5f} · {bucket.same_top:.1%} · ×{bucket.ppl_ratio:.4f}"


def _cache_lines(report: KldReport) -> list[str]:
    lines = calibration_lines(report.calibration) + model_lines(report.quants)
    sources = [text.source for text in report.texts]
    for q in report.quants:
        note = same_text_note(str(q.imatrix.get("dataset", "")), sources, report.calibration)
        lines += [f"{q.label}: {note}"] if note else []
    if report.cache:
        c = report.cache
        lines.append(
            f"baseline kept as top {c.top_k} + tail mass + {c.tail_samples} tail draws: "
            f"{c.bytes_per_token} B/token ({c.size_ratio:.0f}× smaller than llama-perplexity's "
            f"{c.llama_cpp_bytes_per_token} B/token), {c.file_bytes / 1e6:.1f} MB; mean tail mass "
            f"{c.tail_mass_mean:.2e}"
        )
    for q in report.quants:
        if q.tail:
            lines.append(
                f"{q.label}: KL mean {q.stats.kl_mean:.6f} = {q.tail.kl_mean_lower_bound:.6f} (top "
                f"{report.cache.top_k if report.cache else '?'} + merged tail, a lower bound) + "
                f"{q.tail.kl_tail_estimate:.6f} ± {q.tail.kl_tail_estimate_unc:.6f} (tail estimate)"
            )
    return lines


def _tables(report: KldReport) -> list[tuple[str | None, str, Table, Table | None]]:
    """Per section (the whole corpus, then each text): its category, heading, summary table and
    llama-perplexity statistics table (None without quants)."""
    labels = [q.label for q in report.quants]
    out = []
    for category, heading in _sections(report):
        title = _title(report) if category is None else heading
        summary = summary_table(report, category, title)
        detail = None
        if report.quants:
            detail = Table(
                f"llama-perplexity statistics, {heading}",
                ["statistic", *labels],
                detail_rows(_stats_of(report, category)),
            )
        out.append((category, heading, summary, detail))
    return out


def render_kld_report(report: KldReport, console: Console) -> None:
    """Print the summary and llama-perplexity's statistics over the corpus, then per text."""
    for _, _, summary, detail in _tables(report):
        console.print(to_rich(summary))
        if detail is not None:
            console.print(to_rich(detail, show_edge=False))
    equivalent = equivalence_table(report.quants)
    if equivalent is not None:
        console.print(to_rich(equivalent, show_edge=False))
    positions = position_table(report)
    if positions is not None:
        console.print(to_rich(positions, show_edge=False))
    for line in _cache_lines(report):
        console.print(line)
    render_frontier(report.to_dict()["frontier"], console)
    if note := notes.source_note(q.label for q in report.quants):
        console.print(note, markup=False, highlight=False)


def render_kld_markdown(report: KldReport) -> str:
    """The report as a Markdown document: the same tables as the terminal's."""
    lines = [f"# {_title(report)}", ""]
    if len(report.texts) > 1:
        lines += ["Texts (each chunked on its own, as llama-perplexity would chunk it alone):", ""]
        texts = [[t.name, t.source, str(t.n_chunks), str(t.tokens_scored)] for t in report.texts]
        lines += to_markdown(Table("", ["text", "source", "chunks", "tokens scored"], texts))
        lines.append("")
    for category, heading, summary, detail in _tables(report):
        lines += [f"## {'Whole corpus' if category is None else heading}", ""]
        lines += to_markdown(summary)
        if detail is not None:
            lines += ["", "llama-perplexity statistics:", ""]
            lines += to_markdown(detail)
        lines.append("")
    equivalent = equivalence_table(report.quants, "Equivalence to the baseline over the chunks")
    if equivalent is not None:
        lines += [f"{equivalent.title} (90 % intervals):", ""] + to_markdown(equivalent) + [""]
    positions = position_table(report)
    if positions is not None:
        lines += ["## KL by position", "", *to_markdown(positions), ""]
    lines += [f"{line}  " for line in _cache_lines(report)]
    lines += frontier_markdown(report.to_dict()["frontier"])
    if note := notes.source_note(q.label for q in report.quants):
        lines += ["", note]
    return "\n".join(lines).rstrip() + "\n"


def render_kld_html(report: KldReport) -> str:
    """A self-contained HTML page of a corpus report: the same tables as the terminal's."""
    body = "".join(
        f"<h2>{html.escape(heading)}</h2>{to_html(summary)}"
        + (to_html(detail) if detail is not None else "")
        for _, heading, summary, detail in _tables(report)
    )
    positions = position_table(report)
    if positions is not None:
        body += f"<h2>KL by position</h2>{to_html(positions)}"
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in _cache_lines(report))
    return html_page(_title(report), body + lines + frontier_html(report.to_dict()["frontier"]))
