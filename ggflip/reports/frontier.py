"""The frontier of a report (`ggflip.scoring.frontier`) as a table, lines, Markdown, HTML and an
SVG plot; every mode's writers call these with the report's `frontier` object.

The table lists every placed model by memory, the frontier marked and each dominated model
naming the one that beats it; the lines under it say what memory counts, where the noise floor
is, which models were left out and why, and any note on a surprising order. The plot is damage
on a log axis against memory in GB: labelled points with their 95% intervals, the frontier as a
staircase, the noise floor as a band, the baseline (damage 0) as a vertical line.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from ggflip.reports.tables import Table, to_html, to_markdown, to_rich
from ggflip.scoring.formats import sig
from ggflip.scoring.frontier import frontier_object
from ggflip.scoring.registry import REGISTRY

FRONTIER_HEADER = ["model", "memory", "bits/weight", "damage", "frontier"]
ON_FRONTIER = "★ frontier"


def size_text(n_bytes: float | None) -> str:
    """Bytes in decimal units, as `--budget` takes them: 291.4 MB, 1.53 GB."""
    if n_bytes is None:
        return "–"
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.2f} GB"
    if n_bytes >= 1e6:
        return f"{n_bytes / 1e6:.1f} MB"
    return f"{n_bytes / 1e3:.1f} kB" if n_bytes >= 1e3 else f"{int(n_bytes)} B"


def damage_cell(frontier: Mapping[str, Any], value: float | None) -> str:
    """A damage value in its metric's format (a KL percentile not registered: significant
    digits)."""
    key = frontier["by"]
    return REGISTRY[key].cell(value) if key in REGISTRY else sig(value)


def _damage_text(frontier: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    text = damage_cell(frontier, point["damage"])
    interval = point.get("damage_interval")
    if interval:
        low, high = (damage_cell(frontier, v) for v in interval)
        text += f" [{low}, {high}]"
    return text + (" (baseline)" if point["role"] == "baseline" else "")


def frontier_table(frontier: Mapping[str, Any], title: str = "") -> Table:
    """Every placed model by memory: its memory, bits per weight, damage and place."""
    rows = [
        [
            point["label"],
            size_text(point["memory_bytes"]),
            "–" if point.get("bits_per_weight") is None else f"{point['bits_per_weight']:.2f}",
            _damage_text(frontier, point),
            ON_FRONTIER if point["on_frontier"] else f"beaten by {point['dominated_by']}",
        ]
        for point in frontier["points"]
    ]
    header = [*FRONTIER_HEADER]
    intervals = any(p.get("damage_interval") for p in frontier["points"])
    header[3] = frontier["label"] + (" [95% CI]" if intervals else "")
    return Table(title or frontier_title(frontier), header, rows)


def frontier_title(frontier: Mapping[str, Any]) -> str:
    return f"Memory against {frontier['label']}: the frontier (no file both smaller and better)"


def memory_line(frontier: Mapping[str, Any], short: bool = False) -> str:
    """What the memory column counts (`short`: without the trailing explanation or stop)."""
    if frontier["memory_basis"] == "file_size":
        if short:
            return "memory = file size: no KV at this ctx"
        return "memory = file size: no KV at this ctx (the report has no memory estimate)."
    kv = f", KV cache {frontier['kv_type']}" if frontier.get("kv_type") else ""
    ctx = f" at ctx {frontier['ctx']}" if frontier.get("ctx") else ""
    line = f"memory = weights + KV cache{ctx}{kv}"
    if short:
        return line
    return line + " (llama.cpp's compute buffer is not counted: `ggflip inspect FILE --measure`)."


def frontier_lines(frontier: Mapping[str, Any]) -> list[str]:
    """The lines under the table: memory basis, noise floor, left-out models, notes."""
    lines = [memory_line(frontier)]
    floor = frontier.get("floor")
    if floor:
        lines.append(
            f"Noise floor, {floor['label']}: {frontier['label']} "
            f"{damage_cell(frontier, floor['damage'])}; damage at or below it is what scoring "
            "the baseline again does."
        )
    lines += [f"Left out: {m['label']}: {m['reason']}." for m in frontier["left_out"]]
    lines += [
        note[0].upper() + note[1:] + "." for note in frontier["notes"]
        if not note.startswith("memory = file size")
    ]
    return lines


def render_frontier(frontier: Mapping[str, Any] | None, console: Console) -> None:
    """Print the frontier table and its lines on a terminal (nothing when no model could be
    placed: the JSON's `left_out` says why)."""
    if not frontier or not frontier["points"]:
        return
    console.print(to_rich(frontier_table(frontier), show_edge=False))
    for line in frontier_lines(frontier):
        console.print(line, style="dim", markup=False, highlight=False)


def frontier_markdown(frontier: Mapping[str, Any] | None) -> list[str]:
    """The frontier as a Markdown section (its heading, table and lines); [] without one."""
    if not frontier or not frontier["points"]:
        return []
    lines = ["", f"## {frontier_title(frontier)}", ""]
    lines += to_markdown(frontier_table(frontier)) + [""]
    return lines + [f"{line}  " for line in frontier_lines(frontier)]


def frontier_html(frontier: Mapping[str, Any] | None) -> str:
    """The frontier as an HTML section: heading, the SVG plot, the table and its lines."""
    if not frontier or not frontier["points"]:
        return ""
    esc = html.escape
    table = to_html(frontier_table(frontier))
    plot = frontier_svg(frontier)
    lines = "".join(f"<p>{esc(line)}</p>" for line in frontier_lines(frontier))
    return (
        f"<h2>{esc(frontier_title(frontier))}</h2>"
        f'<figure class="frontier">{plot}</figure>{table}{lines}'
    )


def frontier_svg(frontier: Mapping[str, Any]) -> str:
    """The frontier plot as an inline `<svg>` element (text kept as text)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ggflip.reports.frontier_plot import frontier_plot

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ggflip"}):
        figure, axes = plt.subplots(figsize=(7.2, 4.6))
        frontier_plot(axes, frontier)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")
        plt.close(figure)
    return inline_svg(buffer.getvalue())


def inline_svg(document: str) -> str:
    """An SVG document as an element for an HTML page: no XML prolog, no metadata, and no
    namespace URLs (HTML5 parsing puts `<svg>` and `xlink:href` in their namespaces itself), so
    the page holds no link at all."""
    svg = document[document.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)


def of_document(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """A report's `frontier` object; computed for a report saved before reports carried one."""
    saved = document.get("frontier")
    return saved if isinstance(saved, Mapping) else frontier_object(document)
