"""Pages from a saved run report (`ggflip.report/1` JSON): Markdown tables and an HTML page with
plots.

The HTML page is self-contained: its four matplotlib figures are PNGs embedded as base64
`data:` URIs, and it has no script or external link. The figures follow the paper's argument:
KL against bits per weight (the cost/quality curve), % flips against mean KL with their
Spearman rank correlation (the headline: distance metrics agree), the flip rate per
baseline top-margin bucket (flips sit where the baseline was unsure), and accuracy with its
95% intervals (why accuracy alone hides the damage). The Markdown page carries the same
tables, for pasting into a model card.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from ggflip.choice.report import SCHEMA
from ggflip.errors import DataError
from ggflip.reports.generation import GEN_SCHEMA, render_gen_html, render_gen_markdown
from ggflip.scoring.stats import spearman


def load_run_report(path: Path) -> dict[str, Any]:
    """Read a run report written by `ggflip run --json` or `--out` (multiple choice or generation).

    Raises:
        DataError: missing, not JSON, or not a ggflip report.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: report not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(document, dict) or document.get("schema") not in (SCHEMA, GEN_SCHEMA):
        raise DataError(
            f"{path}: not a ggflip report (expected schema {SCHEMA!r} or {GEN_SCHEMA!r}); write "
            "one with `ggflip run --out`"
        )
    return document


def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, fmt)


def _size(value: Any) -> str:
    if not value:
        return "–"
    return f"{value / 2**20:,.1f} MiB" if value >= 2**20 else f"{value / 2**10:,.1f} KiB"


def summary_rows(document: dict[str, Any]) -> list[list[str]]:
    """The summary table: one row for the baseline, one per quant."""
    rows = []
    base = document.get("baseline")
    if base:
        low, high = base["accuracy_ci"] or (None, None)
        rows.append(
            [
                f"{base['label']} (baseline)",
                _num(base.get("bits_per_weight"), ".2f"),
                _size(base.get("file_size")),
                f"{_num(base['accuracy'], '.1f', 100)} [{_num(low, '.1f', 100)}, "
                f"{_num(high, '.1f', 100)}]",
                "",
                "",
                "",
                "",
                "",
            ]
        )
    for quant in document["quants"]:
        low, high = quant["accuracy_ci"] or (None, None)
        rows.append(
            [
                quant["label"],
                _num(quant.get("bits_per_weight"), ".2f"),
                _size(quant.get("file_size")),
                f"{_num(quant['accuracy'], '.1f', 100)} [{_num(low, '.1f', 100)}, "
                f"{_num(high, '.1f', 100)}]",
                _num(quant["delta_accuracy"], "+.1f", 100),
                _num(quant["flips"], ".1f", 100),
                f"{quant['n_flips_lost']} / {quant['n_flips_gained']}",
                _num(quant["kl_mean"], ".4f"),
                _num(quant["same_top"], ".1f", 100),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "model",
    "bits/weight",
    "size",
    "accuracy % [95% CI]",
    "Δacc pts",
    "flips %",
    "c→i / i→c",
    "KL mean",
    "same top %",
]


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


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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
    """The report as Markdown: `ggflip.reports.markdown`'s document, then model files and the
    flips–KL correlation."""
    from ggflip.choice.report import report_from_dict
    from ggflip.reports.markdown import render_markdown as report_markdown

    if document.get("schema") == GEN_SCHEMA:
        return render_gen_markdown(document)
    try:
        text = report_markdown(report_from_dict(document))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"report does not match schema {SCHEMA}: {exc}") from None
    parts = [
        text,
        "## Model files and accuracy intervals\n",
        _markdown_table(SUMMARY_HEADER, summary_rows(document)),
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
        ("Flip rate by subject, most damaged quant", subject_plot),
    ):
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        draw(axes, document)
        out[title] = png_base64(figure)
        plt.close(figure)
    return out


def render_html(document: dict[str, Any]) -> str:
    """A self-contained HTML page: title, summary table, five plots, bucket table (for a
    generation report: `reports.generation.render_gen_html`)."""
    if document.get("schema") == GEN_SCHEMA:
        return render_gen_html(document)
    esc = html.escape

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    plots = "".join(
        f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, png in figures(document).items()
    )
    header, rows = _buckets_table(document)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:.5em}"
        "img{max-width:520px}figcaption{text-align:center;color:#555}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(_title(document))}</title>"
        f"<style>{style}</style></head><body><h1>{esc(_title(document))}</h1>"
        f"<p>Questions: {esc(str(document['source']))} "
        f"(prompt {esc(str(document['prompt_version']))}); "
        f"ggflip {esc(str(document.get('ggflip_version', '')))}.</p>"
        f"{table(SUMMARY_HEADER, summary_rows(document))}"
        f"<p>{esc(_correlation_line(document))}</p>{plots}"
        "<h2>Flip rate by the baseline's top margin</h2>"
        f"{table(header, rows) if rows else '<p>no quants</p>'}"
        "<p>flips: share of questions whose correctness changed; KL: KL(baseline ‖ quant) over the "
        "full vocabulary at the answer position, in nats.</p></body></html>\n"
    )
