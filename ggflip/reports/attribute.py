"""An attribution's report (its JSON document, `ggflip.attribute.report`) as tables on the
terminal, Markdown, and a self-contained HTML page with a bar chart of each group's damage and
recovery."""

from __future__ import annotations

import html
import math
from typing import Any

from rich.console import Console

from ggflip.gguf.memory import format_bytes
from ggflip.reports.tables import Table, html_figures, html_page, to_html, to_markdown, to_rich

MIB = 1 << 20


def _kl(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}"


def _types(types: dict[str, int]) -> str:
    return ", ".join(f"{n}×{kind}" if n > 1 else kind for kind, n in types.items())


def _signed_mib(n_bytes: int) -> str:
    return f"{n_bytes / MIB:+,.1f}"


def _choice(document: dict[str, Any]) -> bool:
    return document.get("measure", {}).get("mode") == "choice"


def groups_table(document: dict[str, Any]) -> Table:
    """The groups, ranked by KL recovered per extra MiB."""
    choice = _choice(document)
    header = ["#", "group", "tensors", "quant types", "source types", "extra MiB"]
    header += ["damage KL", "restored KL", "recovered KL", "recovered / MiB"]
    if choice:
        header += ["damage flips", "restored flips"]
    rows = []
    for rank, group in enumerate(document["groups"], 1):
        per_mib = group["recovered_per_mib"]
        row = [
            str(rank),
            group["name"],
            str(group["n_tensors"]),
            _types(group["types"]["quant"]),
            _types(group["types"]["source"]),
            _signed_mib(group["extra_bytes"]),
            _kl(group["damage_kl"]),
            _kl(group["recovery_kl"]),
            _kl(group["recovered_kl"]),
            ("no extra bytes" if group["extra_bytes"] <= 0 else "–")
            if per_mib is None
            else f"{per_mib:.5f}",
        ]
        if choice:
            row += [
                str(int(group["damage"].get("n_flips", 0))),
                str(int(group["recovery"].get("n_flips", 0))),
            ]
        rows.append(row)
    quant = document["quant"].rsplit("/", 1)[-1]
    return Table(f"Where {quant}'s damage comes from (by {document['by']})", header, rows)


def verify_table(document: dict[str, Any]) -> Table | None:
    """The recipe's model beside the quant and the uniform quants, on the held-out data."""
    if not document.get("verify"):
        return None
    choice = _choice(document)
    header = ["model", "file size", "mean KL", "±"] + (["flips"] if choice else ["PPL ratio"])
    rows = []
    for row in document["verify"]:
        figures = row["figures"]
        last = (
            str(int(figures.get("n_flips", 0)))
            if choice
            else f"{figures.get('ppl_ratio') or math.nan:.4f}"
        )
        rows.append(
            [
                row["label"],
                format_bytes(row["file_bytes"]),
                _kl(figures.get("kl_mean")),
                _kl(figures.get("kl_mean_unc")),
                last,
            ]
        )
    described = document.get("verify_measure", {})
    where = ", ".join(described.get("texts", ())) or described.get("task", "held-out data")
    return Table(f"The recipe measured on {where}", header, rows)


def notes(document: dict[str, Any]) -> list[str]:
    """The sentences under the tables: bytes, additivity, the recipe."""
    add = document["additivity"]
    tensor_bytes = document["tensor_bytes"]
    lines = [
        f"Whole quant: mean KL {_kl(add['quant_kl'])} against the baseline "
        f"({', '.join(document['measure'].get('texts', ())) or document['measure'].get('task')}).",
        f"Tensor bytes: baseline {format_bytes(tensor_bytes['baseline'])}, quant "
        f"{format_bytes(tensor_bytes['quant'])}, source {format_bytes(tensor_bytes['source'])} "
        "(the groups' bytes add up to these).",
        _additivity_line(add),
    ]
    recipe = document.get("recipe")
    if recipe:
        lines += _recipe_lines(recipe)
    return lines


def _additivity_line(add: dict[str, Any]) -> str:
    ratio = add.get("damage_ratio")
    if ratio is None:
        return "Additivity: not defined (the quant's KL is 0)."
    how = (
        "the damages add up"
        if 0.85 <= ratio <= 1.15
        else "groups hurt more together than alone"
        if ratio < 1
        else "single-group damages overlap (together they hurt less than the sum)"
    )
    return (
        f"Additivity: the single-group damages sum to {_kl(add['sum_damage_kl'])}, "
        f"{ratio:.2f}× the whole quant's {_kl(add['quant_kl'])} ({how}); the single-group "
        f"recoveries sum to {_kl(add['sum_recovered_kl'])} "
        f"({(add.get('recovered_ratio') or math.nan):.2f}×)."
    )


def _recipe_lines(recipe: dict[str, Any]) -> list[str]:
    groups = ", ".join(recipe["groups"]) or "nothing (no group fits the budget)"
    return [
        f"Recipe for +{format_bytes(recipe['budget_bytes'])}: raise {groups}; "
        f"+{format_bytes(recipe['extra_bytes'])}, file about {format_bytes(recipe['file_bytes'])}, "
        f"predicted mean KL {_kl(recipe['predicted_kl'])} (if recoveries add up); chosen "
        + (
            "by recovery per byte (greedy)"
            if recipe.get("method") == "greedy"
            else "from every subset (greedy by recovery per byte would recover less)"
        )
        + ".",
        f"llama-quantize: {recipe['llama_quantize']}",
        f"ggflip (splices it): {recipe['ggflip']}",
    ]


def _tables(document: dict[str, Any]) -> list[Table]:
    tables = [groups_table(document)]
    verify = verify_table(document)
    return tables + ([verify] if verify else [])


def render_attribute_report(document: dict[str, Any], console: Console) -> None:
    """The tables and notes on a terminal."""
    for table in _tables(document):
        console.print(to_rich(table))
    for line in notes(document):
        console.print(line, markup=False, highlight=False)


def render_attribute_markdown(document: dict[str, Any]) -> str:
    """The report as Markdown."""
    parts = [f"# Attribution: {document['quant']} against {document['baseline']}", ""]
    for table in _tables(document):
        parts += [f"## {table.title}", "", *to_markdown(table), ""]
    parts += [f"- {_code(line)}" for line in notes(document)]
    return "\n".join(parts) + "\n"


def _code(line: str) -> str:
    """A note's command (after "llama-quantize: " or "…(splices it): ") as Markdown code."""
    for lead in ("llama-quantize: ", "ggflip (splices it): "):
        if line.startswith(lead):
            return f"{lead}`{line.removeprefix(lead)}`"
    return line


def bar_plot(axes: Any, document: dict[str, Any]) -> None:
    """Each group's damage and recovered KL as horizontal bars, in the ranking's order."""
    import numpy as np

    groups = document["groups"]
    y = np.arange(len(groups))[::-1]
    damage = [g["damage_kl"] or 0.0 for g in groups]
    recovered = [g["recovered_kl"] or 0.0 for g in groups]
    axes.barh(y + 0.2, damage, height=0.4, color="#d62728", alpha=0.8, label="damage (alone)")
    axes.barh(y - 0.2, recovered, height=0.4, color="#2ca02c", alpha=0.8, label="recovered")
    axes.axvline(document["additivity"]["quant_kl"] or 0.0, color="#555", ls="--", lw=1)
    labels = [f"{g['name']} ({g['extra_bytes'] / MIB:+,.1f} MiB)" for g in groups]
    axes.set_yticks(y, labels, fontsize=7)
    axes.set_xlabel("mean KL (nats); dashed: the whole quant")
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(True, axis="x", alpha=0.3)


def render_attribute_html(document: dict[str, Any]) -> str:
    """A self-contained HTML page: the tables, the notes and the bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ggflip.reports.plots import png_base64

    figure, axes = plt.subplots(figsize=(6.4, 0.3 * len(document["groups"]) + 1.5))
    bar_plot(axes, document)
    png = png_base64(figure)
    plt.close(figure)
    body = "".join(f"<h2>{html.escape(t.title)}</h2>{to_html(t)}" for t in _tables(document))
    body += "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in notes(document)) + "</ul>"
    body += html_figures({"Damage and recovery by group (mean KL), ranked": png})
    return html_page(f"Attribution: {document['quant']}", body)
