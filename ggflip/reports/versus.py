"""Quant against quant as a table and a sentence (`ggflip.scoring.versus.compare_quants`'s
result), for the terminal, Markdown and `ggflip pick --compare A B`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console

from ggflip.reports.tables import Table, to_markdown, to_rich
from ggflip.scoring.formats import DASH, pct, sig


def _interval(bounds: list[float | None], scale: float, digits: str) -> str:
    low, high = bounds
    if low is None or high is None or low != low or high != high:  # null or nan
        return DASH
    return f"[{scale * low:{digits}}, {scale * high:{digits}}]"


def comparison_table(result: Mapping[str, Any]) -> Table:
    """Rows accuracy (if graded) and KL mean: A, B, A - B with its 95 % interval, the test."""
    a, b, unit = result["a"], result["b"], result["unit"]
    rows = []
    accuracy = result.get("accuracy")
    if accuracy:
        rows.append([
            "accuracy",
            pct(accuracy["a"]),
            pct(accuracy["b"]),
            f"{100 * accuracy['difference']:+.1f} pt "
            + _interval(accuracy["ci"], 100, "+.1f"),
            f"McNemar p = {accuracy['mcnemar_p']:.3g} ({a} only right on {accuracy['a_only']}, "
            f"{b} only on {accuracy['b_only']})",
        ])
    kl = result["kl"]
    rows.append([
        "KL mean",
        sig(kl["a_mean"]),
        sig(kl["b_mean"]),
        f"{sig(kl['difference'])} " + _interval(kl["ci"], 1, ".3g"),
        f"sign test p = {kl['sign_p']:.3g} ({a} lower on {kl['a_lower']} {unit}, {b} on "
        f"{kl['b_lower']})",
    ])
    header = ["", a, b, f"{a} − {b} [95% CI]", "paired test"]
    return Table(f"{a} against {b} on the same {result['n']} {unit}", header, rows)


def comparison_sentence(result: Mapping[str, Any]) -> str:
    """Which quant is closer to the baseline and which is more accurate, where it is shown."""
    kl, accuracy = result["kl"], result.get("accuracy")
    parts = []
    if kl["lower"]:
        other = result["b"] if kl["lower"] == result["a"] else result["a"]
        parts.append(f"{kl['lower']} is closer to the baseline than {other} (lower KL)")
    else:
        parts.append("no significant KL difference")
    if accuracy is not None:
        higher = accuracy["higher"]
        parts.append(
            f"{higher} is more accurate" if higher else "no significant accuracy difference"
        )
    return "; ".join(parts) + " (paired tests at 0.05)."


def render_comparison(result: Mapping[str, Any], console: Console) -> None:
    """The comparison on the terminal: the table, then the sentence."""
    console.print(to_rich(comparison_table(result), show_edge=False))
    console.print(comparison_sentence(result), markup=False, highlight=False)


def comparison_markdown(result: Mapping[str, Any]) -> str:
    """The comparison as Markdown: a heading, the table and the sentence."""
    table = comparison_table(result)
    lines = [f"## {table.title}", "", *to_markdown(table), "", comparison_sentence(result)]
    return "\n".join(lines) + "\n"
