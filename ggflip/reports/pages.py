"""Pages from a saved run report (`ggflip.report/1` JSON): Markdown tables and an HTML page with
plots.

The HTML page is self-contained: its five matplotlib figures are PNGs embedded as base64
`data:` URIs, and it has no script or external link. It carries the tables the terminal and the
Markdown have (the summary with the noise floor's row, the verdicts against the floor). The
figures follow the paper's argument: KL against bits per weight (the cost/quality curve), % flips
against mean KL with their Spearman rank correlation (the headline: distance metrics agree), the
flip rate per baseline top-margin bucket (flips sit where the baseline was unsure), accuracy with
its 95% intervals (why accuracy alone hides the damage), and the subjects whose flip rate is
surely high (ranked by its Wilson lower bound). The Markdown page carries the same tables, for
pasting into a model card.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from ggflip.choice.report import SCHEMA, Report, report_from_dict
from ggflip.errors import DataError
from ggflip.reports.choice import VERDICT_HEADER, legend_terms, summary_table, verdict_rows
from ggflip.reports.choice import render_markdown as report_markdown
from ggflip.reports.equivalence import equivalence_table
from ggflip.reports.frontier import frontier_html, of_document
from ggflip.reports.generation import GEN_SCHEMA, render_gen_html, render_gen_markdown
from ggflip.reports.tables import (
    Table,
    calibration_lines,
    html_figures,
    html_page,
    legend_line,
    model_lines,
    to_html,
    to_markdown,
)
from ggflip.scoring.stats import spearman
from ggflip.store.documents import read_report


def load_run_report(path: Path) -> dict[str, Any]:
    """Read a report written by `ggflip run --json` or `--out` (multiple choice or generation), or
    by `ggflip attribute`.

    Raises:
        DataError: missing, not JSON, or not a ggflip report.
    """
    from ggflip.attribute.report import SCHEMA as ATTRIBUTE_SCHEMA

    return read_report(
        path,
        (SCHEMA, GEN_SCHEMA, ATTRIBUTE_SCHEMA),
        f" (expected schema {SCHEMA!r}, {GEN_SCHEMA!r} or {ATTRIBUTE_SCHEMA!r}); write one with "
        "`ggflip run --out` or `ggflip attribute --out`",
    )


def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, fmt)


def _size(value: Any) -> str:
    if not value:
        return "–"
    return f"{value / 2**20:,.1f} MiB" if value >= 2**20 else f"{value / 2**10:,.1f} KiB"


def _files_row(label: str, model: dict[str, Any]) -> list[str]:
    low, high = model["accuracy_ci"] or (None, None)
    return [
        label,
        _num(model.get("bits_per_weight"), ".2f"),
        _size(model.get("file_size")),
        f"{_num(model['accuracy'], '.1f', 100)} [{_num(low, '.1f', 100)}, "
        f"{_num(high, '.1f', 100)}]",
    ]


FILES_HEADER = ["model", "bits/weight", "size", "accuracy % [95% CI]"]


def files_table(document: dict[str, Any]) -> Table:
    """Each model's file (bits per weight, size) and accuracy with its 95% interval, the noise
    floor's row after the baseline's; the other summary metrics are the report's summary table
    (`ggflip.reports.choice`)."""
    base = document.get("baseline")
    rows = [_files_row(f"{base['label']} (baseline)", base)] if base else []
    floor = document.get("floor")
    rows += [_files_row(floor["label"], floor)] if floor else []
    rows += [_files_row(quant["label"], quant) for quant in document["quants"]]
    return Table("Model files and accuracy intervals", FILES_HEADER, rows)


def _buckets_table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    quants = document["quants"]
    if not quants:
        return [], []
    header = ["top margin", *(q["label"] for q in quants)]
    rows = []
    for index, bucket in enumerate(quants[0]["margin_buckets"]):
        row = [f"{bucket['lo']:.2f}–{bucket['hi']:.2f}"]
        for quant in quants:
            b = quant["margin_buckets"][index] if index < len(quant["margin_buckets"]) else None
            row.append(
                "–"
                if not b or not b["n"]
                else f"{100 * (b['flip_rate'] or 0):.1f}% ({b['flips']}/{b['n']})"
            )
        rows.append(row)
    return header, rows


def _title(document: dict[str, Any]) -> str:
    return (
        f"ggflip: set {document['set']}, task {document['task']}, {document['n_questions']} "
        "questions" + ("" if document.get("complete", True) else " (INCOMPLETE: stopped early)")
    )


def _correlation_line(document: dict[str, Any]) -> str:
    quants = [q for q in document["quants"] if q["kl_mean"] is not None and q["flips"] is not None]
    rho = spearman([q["kl_mean"] for q in quants], [q["flips"] for q in quants])
    shown = "n/a (needs 3 quants with distinct values)" if math.isnan(rho) else f"{rho:.2f}"
    return (
        f"Spearman rank correlation of % flips and mean KL across the {len(quants)} quants: "
        f"{shown}."
    )


def render_markdown(document: dict[str, Any]) -> str:
    """The report as Markdown: `ggflip.reports.choice`'s document, then model files and the
    flips–KL correlation."""
    if document.get("schema") == GEN_SCHEMA:
        return render_gen_markdown(document)
    text = report_markdown(_report(document), frontier=dict(of_document(document)))
    parts = [
        text,
        "## Model files and accuracy intervals\n",
        "\n".join(to_markdown(files_table(document))) + "\n",
        "",
        _correlation_line(document) + "\n",
        (
            "flips: share of questions whose correctness changed; KL: KL(baseline ‖ quant) over "
            "the full vocabulary at the answer position, in nats.\n"
        ),
    ]
    return "\n".join(parts)


def figures(document: dict[str, Any]) -> dict[str, str]:
    """The five plots as base64 PNGs, by title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ggflip.reports.plots import (
        SUBJECT_CAPTION,
        accuracy_plot,
        flips_vs_kl_plot,
        kl_vs_bpw_plot,
        margin_plot,
        png_base64,
        subject_plot,
    )

    out = {}
    for title, draw in (
        ("KL vs bits per weight", kl_vs_bpw_plot),
        ("Flips vs KL", flips_vs_kl_plot),
        ("Flip rate by top margin", margin_plot),
        ("Accuracy with 95% intervals", accuracy_plot),
        (SUBJECT_CAPTION, subject_plot),
    ):
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        draw(axes, document)
        out[title] = png_base64(figure)
        plt.close(figure)
    return out


def _report(document: dict[str, Any]) -> Report:
    """The typed report of a multiple-choice document.

    Raises:
        DataError: the document does not match the schema.
    """
    try:
        return report_from_dict(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"report does not match schema {SCHEMA}: {exc}") from None


def _verdicts_html(report: Report) -> str:
    """The verdict table against the noise floor, as the terminal and Markdown show it; nothing
    without a floor."""
    if report.floor is None:
        return ""
    return (
        f"<h2>Against the noise floor</h2><p>{html.escape(str(report.floor_method))}.</p>"
        + to_html(Table("", VERDICT_HEADER, verdict_rows(report)))
    )
def _settings(document: dict[str, Any]) -> list[str]:
    return calibration_lines(_report(document).calibration) + model_lines(document["quants"])


def render_html(document: dict[str, Any]) -> str:
    """A self-contained HTML page: title, summary table (the floor's row included), the
    verdicts against the floor, model files, five plots, bucket table (for a
    generation report: `reports.generation.render_gen_html`)."""
    if document.get("schema") == GEN_SCHEMA:
        return render_gen_html(document)
    esc = html.escape
    header, rows = _buckets_table(document)
    buckets = to_html(Table("", header, rows)) if rows else "<p>no quants</p>"
    report = _report(document)
    summary = summary_table(report, show_cached=False)
    models = [*([document["floor"]] if document.get("floor") else []), *document["quants"]]
    equivalent = equivalence_table(models)
    return html_page(
        _title(document),
        f"<p>Questions: {esc(str(document['source']))} "
        f"(prompt {esc(str(document['prompt_version']))}); "
        f"ggflip {esc(str(document.get('ggflip_version', '')))}.</p>"
        f"{to_html(summary)}<p>{esc(legend_line(legend_terms()))}.</p>"
        + "".join(f"<p>{esc(line)}</p>" for line in _settings(document))
        + f"{_verdicts_html(report)}"
        + (f"<h2>{esc(equivalent.title)}</h2>{to_html(equivalent)}" if equivalent else "")
        + f"{to_html(files_table(document))}"
        f"{frontier_html(of_document(document))}"
        f"<p>{esc(_correlation_line(document))}</p>{html_figures(figures(document))}"
        "<h2>Flip rate by the baseline's top margin</h2>"
        f"{buckets}"
        "<p>flips: share of questions whose correctness changed; KL: KL(baseline ‖ quant) over the "
        "full vocabulary at the answer position, in nats.</p>",
    )
