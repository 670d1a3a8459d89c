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

from ggflip.generate.report import SCHEMA as GEN_SCHEMA
from ggflip.generate.report import GenReport

__all__ = ["GEN_SCHEMA", "SUMMARY_HEADER", "render_gen_html", "render_gen_markdown"]

SUMMARY_HEADER = [
    "model",
    "accuracy (base→quant)",
    "flips",
    "same text",
    "first divergence median (p10–p90)",
    "KL mean",
    "KL p99",
    "top-1",
    "RMS Δp",
    "seconds",
]


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def summary_rows(document: dict[str, Any]) -> list[list[str]]:
    """One row per quant: accuracy (every rule), flips, same text, divergence, KL, top-1, time."""
    rows = []
    for q in document["quants"]:
        accuracy = " / ".join(
            f"{name} {_num(s['baseline_accuracy'], 3)}→{_num(s['accuracy'], 3)}"
            for name, s in q["by_rule"].items()
        )
        d = q["first_divergence"]
        rows.append(
            [
                q["label"],
                accuracy or "–",
                f"{q['n_flips_lost']}↓ {q['n_flips_gained']}↑",
                _num(q["same_text"], 3),
                f"{_num(d['median'], 0)} ({_num(d['p10'], 0)}–{_num(d['p90'], 0)}), "
                f"never {d['never']}",
                _num(q["kl_mean"], 5),
                _num(q["kl_p99"], 4),
                _num(q["top1_agreement"], 4),
                _num(q["delta_p_rms"], 4),
                f"{q['seconds'] or 0:.1f}",
            ]
        )
    return rows


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
                "–" if row["first_divergence"] is None else str(row["first_divergence"]),
                _num(row["kl_mean"], 4),
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
    notes = [
        f"- `{s['id']}` turn {s['turn'] + 1} skipped: {s['reason']}" for s in document["skipped"]
    ]
    notes += [
        f"- {label}: its own chat template differs from the baseline's (asked through the "
        "baseline's)"
        for label in document.get("chat_template_differs", ())
    ]
    return notes


def render_gen_markdown(report: GenReport | dict[str, Any], flip_rows: int = 10) -> str:
    """The Markdown document of a generation report (a GenReport or its JSON document)."""
    document = _document(report)
    out = [f"# {_title(document)}", ""]
    selection = f" ({document['selection']})" if document.get("selection") else ""
    out += [
        f"Source `{document['source']}`{selection}, prompt `{document['prompt_version']}`.",
        "",
    ]
    out.append("| " + " | ".join(SUMMARY_HEADER) + " |")
    out.append("|" + "---|" * len(SUMMARY_HEADER))
    out += ["| " + " | ".join(row) + " |" for row in summary_rows(document)]
    for q in document["quants"]:
        flipped = _flipped(q, document["answer_rule"], flip_rows)
        if flipped:
            out += ["", f"## {q['label']}: flips", ""]
            out += [f"- `{r[0]}` turn {r[1]} {r[2]}: gold {r[3]}, {r[4]}" for r in flipped]
    notes = _notes(document)
    if notes:
        out += ["", "## Notes", "", *notes]
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
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    _kl_plot(axes, document)
    out["Teacher-forced KL and top-1 agreement per quant"] = png_base64(figure)
    plt.close(figure)
    return out


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


def _kl_plot(axes: Any, document: dict[str, Any]) -> None:
    """Mean teacher-forced KL per quant (bars, log scale) with its top-1 agreement written on."""
    quants = document["quants"]
    labels = [q["label"] for q in quants]
    values = [max(q["kl_mean"] or 0.0, 1e-9) for q in quants]
    bars = axes.bar(labels, values, color="#1f77b4")
    for bar, q in zip(bars, quants):
        axes.annotate(
            f"top-1 {100 * (q['top1_agreement'] or 0):.1f}%",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=8,
        )
    axes.set_yscale("log")
    axes.set_ylabel("mean KL(baseline ‖ quant) per token, nats (log)")
    axes.grid(True, axis="y", alpha=0.3)


def render_gen_html(document: dict[str, Any]) -> str:
    """A self-contained HTML page of a generation report: tables, two plots, the flips."""
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
        for title, png in _figures(document).items()
    )
    flips = ""
    for q in document["quants"]:
        rows = _flipped(q, document["answer_rule"], 50)
        if rows:
            flips += f"<h2>{esc(q['label'])}: flipped answers</h2>{table(_FLIP_HEADER, rows)}"
    notes = "".join(f"<li>{esc(n.removeprefix('- '))}</li>" for n in _notes(document))
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
        f"<p>Prompts: {esc(str(document['source']))} "
        f"{esc(str(document.get('selection') or ''))} "
        f"(prompt {esc(str(document['prompt_version']))}, at most {document['max_new_tokens']} "
        f"new tokens); ggflip {esc(str(document.get('ggflip_version', '')))}.</p>{baseline}"
        f"{table(SUMMARY_HEADER, summary_rows(document))}{plots}{flips}"
        + (f"<ul>{notes}</ul>" if notes else "")
        + "<p>same text: share of turns generated token for token as the baseline; first "
        "divergence: the first generated token where the two differ; KL: KL(baseline ‖ quant) "
        "over the full vocabulary at every token of the baseline's generation, the quant reading "
        "the baseline's text (teacher forcing), in nats.</p></body></html>\n"
    )
