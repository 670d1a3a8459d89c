"""A generation report (`ggflip.generate/1`) as tables: the terminal's, Markdown and an HTML page.

Everything here reads the JSON document (`GenReport.to_dict()`, or a saved `--json` file), so
the CLI's table, the TUI's Markdown export and `ggflip report gen.json` say the same numbers.
The HTML page is self-contained (PNG plots as base64, no scripts, no links): the summary table,
the share of turns whose generation is still the baseline's after each token (one curve per
quant, from every row's first divergence), each quant's teacher-forced KL and top-1 agreement,
and the flipped answers.
"""

from __future__ import annotations

import html
from typing import Any

from rich.console import Console

from ggflip.generate.report import SCHEMA as GEN_SCHEMA
from ggflip.generate.report import GenReport
from ggflip.reports import notes, tables
from ggflip.reports.equivalence import equivalence_table
from ggflip.reports.frontier import frontier_html, frontier_markdown, of_document, render_frontier
from ggflip.reports.tables import (
    Column,
    Table,
    html_figures,
    html_page,
    metric_column,
    model_lines,
    to_html,
    to_markdown,
    to_rich,
)
from ggflip.scoring import metrics
from ggflip.scoring.formats import DASH, num, sig

__all__ = [
    "GEN_SCHEMA",
    "SUMMARY_HEADER",
    "render_gen_html",
    "render_gen_markdown",
    "render_gen_report",
    "summary_rows",
]

MODE = "generate"


def _accuracy(q: dict[str, Any]) -> str:
    """Accuracy under every answer rule, the baseline's → the quant's."""
    text = " / ".join(
        f"{name} {num(s['baseline_accuracy'], 3)}→{num(s['accuracy'], 3)}"
        for name, s in q["by_rule"].items()
    )
    return text or DASH


def _divergence(q: dict[str, Any]) -> str:
    d = q["first_divergence"]
    return f"{num(d['median'], 0)} ({num(d['p10'], 0)}–{num(d['p90'], 0)}), never {d['never']}"


SUMMARY_COLUMNS = [
    Column("model", lambda q: q["label"]),
    Column("accuracy (base→quant)", _accuracy, "accuracy"),
    Column("flips", lambda q: f"{q['n_flips_lost']}↓ {q['n_flips_gained']}↑", "n_flips_lost"),
    Column("same text", lambda q: num(q["same_text"], 3), "same_text"),
    Column(metrics.metric("first_divergence").label, _divergence, "first_divergence"),
    metric_column("kl_mean"),
    metric_column("kl_p99"),
    Column("top-1", lambda q: num(q["top1_agreement"], 4), "top1_agreement"),
    Column("RMS Δp", lambda q: num(q["delta_p_rms"], 4), "delta_p_rms"),
    Column("seconds", lambda q: f"{q['seconds'] or 0:.1f}", "seconds"),
]


def summary_table(document: dict[str, Any], title: str = "") -> Table:
    """One row per quant: accuracy (every rule), flips, same text, divergence, KL, top-1, time,
    then the registered metrics these columns do not place."""
    return tables.summary_table(title, MODE, SUMMARY_COLUMNS, document["quants"])


def summary_rows(document: dict[str, Any]) -> list[list[str]]:
    """The summary table's rows (`summary_table`)."""
    return summary_table(document).rows


SUMMARY_HEADER = [c.label for c in SUMMARY_COLUMNS]


def render_gen_report(report: GenReport, console: Console) -> None:
    """Print the summary table and the skipped turns on the terminal."""
    title = f"ggflip generate: set {report.set}, {report.task}, {report.n_turns} turns"
    if report.baseline is not None and report.baseline.accuracy is not None:
        title += f", baseline accuracy {report.baseline.accuracy:.3f} ({report.answer_rule})"
    if not report.complete:
        title += " (INCOMPLETE: stopped early)"
    document = report.to_dict()
    console.print(to_rich(summary_table(document, title)))
    for line in model_lines(report.quants):
        console.print(line, markup=False, highlight=False)
    equivalent = equivalence_table(document["quants"])
    if equivalent is not None:
        console.print(to_rich(equivalent, show_edge=False))
    render_frontier(document["frontier"], console)
    for skipped in report.skipped:
        console.print(f"[yellow]skipped {skipped.id} turn {skipped.turn}: {skipped.reason}[/]")
    for note in (
        notes.accuracy_noise_note(report.quants, with_floor=False),
        notes.source_note(q.label for q in report.quants),
    ):
        if note:
            console.print(note, markup=False, highlight=False)


def _flipped(quant: dict[str, Any], rule: str | None, limit: int) -> list[list[str]]:
    """The quant's flipped turns: id, turn, direction, gold, both answers, divergence, KL."""
    out = []
    for row in quant["rows"]:
        if row["flip"] is None:
            continue
        base, quant_answer = row["answers"].get(rule or "", ["", ""])
        out.append(
            [
                str(row["id"]),
                str(row["turn"] + 1),
                row["flip"],
                str(row["gold"]),
                f"{base} → {quant_answer}",
                DASH if row["first_divergence"] is None else str(row["first_divergence"]),
                sig(row["kl_mean"]),
            ]
        )
        if len(out) >= limit:
            break
    return out


_FLIP_HEADER = ["id", "turn", "flip", "gold", "base → quant", "first divergence", "KL mean"]


def _document(report: GenReport | dict[str, Any]) -> dict[str, Any]:
    return report.to_dict() if isinstance(report, GenReport) else report


def _title(document: dict[str, Any]) -> str:
    title = f"ggflip generate: {document['set']}, {document['task']} ({document['n_turns']} turns)"
    return title + ("" if document.get("complete", True) else " (INCOMPLETE: stopped early)")


def _notes(document: dict[str, Any]) -> list[str]:
    lines = [
        f"- `{s['id']}` turn {s['turn'] + 1} skipped: {s['reason']}" for s in document["skipped"]
    ]
    lines += [f"- {line}" for line in model_lines(document["quants"])]
    lines += [
        f"- {label}: its own chat template differs from the baseline's (asked through the "
        "baseline's)"
        for label in document.get("chat_template_differs", ())
    ]
    if note := notes.source_note(q["label"] for q in document["quants"]):
        lines.append(f"- {note}")
    return lines


def render_gen_markdown(report: GenReport | dict[str, Any], flip_rows: int = 10) -> str:
    """The Markdown document of a generation report (a GenReport or its JSON document)."""
    document = _document(report)
    out = [f"# {_title(document)}", ""]
    selection = f" ({document['selection']})" if document.get("selection") else ""
    out += [
        f"Source `{document['source']}`{selection}, prompt `{document['prompt_version']}`.",
        "",
    ]
    out += to_markdown(summary_table(document))
    if noise := notes.accuracy_noise_note(document["quants"], with_floor=False):
        out += ["", noise]
    equivalent = equivalence_table(document["quants"])
    if equivalent is not None:
        out += ["", f"{equivalent.title}:", ""] + to_markdown(equivalent)
    for q in document["quants"]:
        flipped = _flipped(q, document["answer_rule"], flip_rows)
        if flipped:
            out += ["", f"## {q['label']}: flips", ""]
            out += [f"- `{r[0]}` turn {r[1]} {r[2]}: gold {r[3]}, {r[4]}" for r in flipped]
    out += frontier_markdown(of_document(document))
    if lines := _notes(document):
        out += ["", "## Notes", "", *lines]
    return "\n".join(out) + "\n"


def _figures(document: dict[str, Any]) -> dict[str, str]:
    """The two plots as base64 PNGs, by title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ggflip.reports.plots import png_base64

    out = {}
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    _survival_plot(axes, document)
    out["Turns still identical to the baseline, by generated token"] = png_base64(figure)
    plt.close(figure)
    figure = kl_figure(document)
    out["Teacher-forced KL and top-1 agreement per quant"] = png_base64(figure)
    plt.close(figure)
    return out


def kl_figure(document: dict[str, Any]) -> Any:
    """The KL chart as the page draws it: a figure whose height grows with the quants."""
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, kl_plot_height(len(document["quants"]))))
    _kl_plot(axes, document)
    return figure


def _survival_plot(axes: Any, document: dict[str, Any]) -> None:
    """Per quant, the share of turns whose text is still the baseline's after t tokens."""
    longest = max((r["n_tokens"] for q in document["quants"] for r in q["rows"]), default=1)
    steps = list(range(longest + 1))
    for q in document["quants"]:
        rows = q["rows"]
        if not rows:
            continue
        starts = [r["first_divergence"] for r in rows]
        share = [sum(s is None or s > t for s in starts) / len(rows) for t in steps]
        axes.step(steps, share, where="post", label=q["label"])
    axes.set_xlabel("generated token")
    axes.set_ylabel("share of turns identical so far")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    if document["quants"]:
        axes.legend(fontsize=8)


def kl_plot_height(n_quants: int) -> float:
    """Inches for the KL chart: a fixed room for the axis and a row per quant, so the quants'
    labels (on the y axis, one line each) never touch however many there are."""
    return 1.4 + 0.42 * max(n_quants, 1)


def _kl_plot(axes: Any, document: dict[str, Any]) -> None:
    """Mean teacher-forced KL per quant as horizontal bars (log scale), the first quant on top,
    each bar's KL and top-1 agreement written after it: labels of any length stay on their own
    row instead of crowding one x axis."""
    quants = document["quants"]
    values = [max(q["kl_mean"] or 0.0, 1e-9) for q in quants]
    y = list(range(len(quants)))[::-1]
    bars = axes.barh(y, values, color="#1f77b4", height=0.6)
    for bar, q in zip(bars, quants):
        axes.annotate(
            f"{sig(q['kl_mean'])}, top-1 {100 * (q['top1_agreement'] or 0):.1f}%",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            textcoords="offset points",
            xytext=(4, 0),
            va="center",
            fontsize=8,
        )
    axes.set_yticks(y, [q["label"] for q in quants], fontsize=8)
    axes.set_xscale("log")
    if values:  # room after the longest bar for its note (a log axis: a factor, not a length)
        axes.set_xlim(min(values) / 3, max(values) * 300)
    axes.set_xlabel("mean KL(baseline ‖ quant) per token, nats (log)")
    axes.grid(True, axis="x", alpha=0.3)


def render_gen_html(document: dict[str, Any]) -> str:
    """A self-contained HTML page of a generation report: tables, two plots, the flips."""
    esc = html.escape
    flips = ""
    for q in document["quants"]:
        rows = _flipped(q, document["answer_rule"], 50)
        if rows:
            table = Table("", _FLIP_HEADER, rows)
            flips += f"<h2>{esc(q['label'])}: flipped answers</h2>{to_html(table)}"
    items = "".join(f"<li>{esc(n.removeprefix('- '))}</li>" for n in _notes(document))
    base = document.get("baseline") or {}
    accuracy = base.get("accuracy")
    baseline = (
        f"<p>Baseline {esc(str(base.get('label', '')))}: {base.get('n_tokens', 0)} tokens"
        + (
            f", accuracy {100 * accuracy:.1f}% ({esc(str(document['answer_rule']))})"
            if accuracy is not None
            else ""
        )
        + ".</p>"
    )
    return html_page(
        _title(document),
        f"<p>Prompts: {esc(str(document['source']))} "
        f"{esc(str(document.get('selection') or ''))} "
        f"(prompt {esc(str(document['prompt_version']))}, at most {document['max_new_tokens']} "
        f"new tokens); ggflip {esc(str(document.get('ggflip_version', '')))}.</p>{baseline}"
        f"{to_html(summary_table(document))}{frontier_html(of_document(document))}"
        f"{html_figures(_figures(document))}{flips}"
        + (f"<ul>{items}</ul>" if items else "")
        + "<p>same text: share of turns generated token for token as the baseline; first "
        "divergence: the first generated token where the two differ; KL: KL(baseline ‖ quant) "
        "over the full vocabulary at every token of the baseline's generation, the quant reading "
        "the baseline's text (teacher forcing), in nats.</p>",
    )
