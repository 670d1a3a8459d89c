"""The frontier plot, drawn onto given matplotlib axes from a report's `frontier` object.

Damage (log axis when every quant's damage is above 0) against memory in GB; each quant a
labelled point with its 95% interval as an error bar (filled: on the frontier; hollow: beaten);
the frontier a staircase through its points (from each frontier file, nothing better until the
next larger one); the noise floor a grey band from the bottom up to the floor's damage (its upper
95% bound when known); the baseline, whose damage is 0 by definition, a vertical line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

FRONT, BEATEN, BASE, BAND = "#1f77b4", "#999999", "#d62728", "#dddddd"


def _empty(axes: Any, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#777")
    axes.set_xticks([])
    axes.set_yticks([])


def _x_label(frontier: Mapping[str, Any]) -> str:
    if frontier["memory_basis"] == "file_size":
        return "file size, GB (no KV cache counted)"
    ctx = f" at ctx {frontier['ctx']}" if frontier.get("ctx") else ""
    return f"memory, GB (weights + KV cache{ctx})"


def frontier_plot(axes: Any, frontier: Mapping[str, Any]) -> None:
    """Draw the frontier of one report onto `axes`."""
    quants = [p for p in frontier["points"] if p["role"] == "quant"]
    base = next((p for p in frontier["points"] if p["role"] == "baseline"), None)
    if not quants:
        _empty(axes, "no quant with a known memory and damage")
        return
    x = np.array([p["memory_bytes"] / 1e9 for p in quants])
    y = np.array([p["damage"] for p in quants], dtype=float)
    log = bool((y > 0).all()) and frontier["unit"] != "ratio"
    floor = frontier.get("floor")
    _points(axes, quants, x, y)
    _staircase(axes, quants, base)
    if log:
        axes.set_yscale("log")
    _floor_band(axes, frontier, floor, y, log)
    if log:
        axes.set_ylim(top=max(axes.get_ylim()[1], float(y.max()) * 2.5))  # room for the labels
    if base is not None:
        _baseline(axes, base, x)
    right = base["memory_bytes"] / 1e9 if base and _base_shown(base, x) else float(x.max())
    span = max(right - float(x.min()), 0.05 * right)
    axes.set_xlim(float(x.min()) - 0.08 * span, right + 0.3 * span)  # room for the labels
    axes.set_xlabel(_x_label(frontier))
    unit = f", {frontier['unit']}" if frontier["unit"] not in ("fraction", "ratio") else ""
    axes.set_ylabel(f"{frontier['label']}{unit}" + (" (log)" if log else ""))
    axes.grid(True, which="major", alpha=0.3)


def _points(axes: Any, quants: list[Mapping[str, Any]], x: Any, y: Any) -> None:
    for point, xi, yi in zip(quants, x, y):
        interval = point.get("damage_interval")
        low, high = interval if interval else (yi, yi)
        error = [[max(yi - low, 0.0)], [max(high - yi, 0.0)]]
        on = point["on_frontier"]
        axes.errorbar(
            [xi], [yi], yerr=error, fmt="o", capsize=3, zorder=3,
            color=FRONT if on else BEATEN,
            markerfacecolor=FRONT if on else "white",
        )
        text = point["label"] if on else f"{point['label']} (beaten by {point['dominated_by']})"
        axes.annotate(
            text, (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=8,
            color="#222" if on else "#777",
        )


def _staircase(
    axes: Any, quants: list[Mapping[str, Any]], base: Mapping[str, Any] | None
) -> None:
    """The frontier: from each frontier file, flat until the next larger frontier file."""
    front = [p for p in quants if p["on_frontier"]]
    xs = [p["memory_bytes"] / 1e9 for p in front]
    ys = [p["damage"] for p in front]
    if base is not None and base["on_frontier"] and xs and _base_shown(base, xs):
        xs.append(base["memory_bytes"] / 1e9)
        ys.append(ys[-1])
    if len(xs) > 1:
        axes.step(xs, ys, where="post", color=FRONT, linewidth=1.2, zorder=2, label="frontier")


def _floor_band(
    axes: Any, frontier: Mapping[str, Any], floor: Mapping[str, Any] | None, y: Any, log: bool
) -> None:
    """The noise floor as a band from the bottom of the axes up to the floor's damage."""
    if not floor or floor["damage"] is None:
        return
    interval = floor.get("damage_interval")
    top = max(interval[1] if interval else floor["damage"], floor["damage"])
    if log and top <= 0:
        return
    low, high = axes.get_ylim()
    bottom = min(low, top / 3) if log else min(low, 0.0)
    axes.axhspan(bottom, top, color=BAND, alpha=0.6, zorder=0, label="noise floor")
    axes.annotate(
        f"noise floor ({floor['label']})",
        (0.0, top),
        xycoords=("axes fraction", "data"),
        textcoords="offset points",
        xytext=(4, -10),
        fontsize=8,
        color="#555",
    )
    axes.set_ylim(bottom, max(high, top * (1.5 if log else 1.05)))


def _base_shown(base: Mapping[str, Any], quant_gb: Any) -> bool:
    """Whether the baseline fits on the memory axis without squeezing the quants into a corner
    (an F16 is about twice the largest quant)."""
    return bool(base["memory_bytes"] / 1e9 <= 1.4 * max(quant_gb))


def _baseline(axes: Any, base: Mapping[str, Any], quant_gb: Any) -> None:
    """The baseline (damage 0) as a vertical line, or an arrow note at the right edge when it is
    far larger than every quant."""
    gb = base["memory_bytes"] / 1e9
    where: tuple[Any, ...] = ((gb, 1.0), ("data", "axes fraction"))
    text = f"{base['label']} (baseline, damage 0)"
    if _base_shown(base, quant_gb):
        axes.axvline(gb, color=BASE, linestyle=":", linewidth=1)
    else:
        where = ((1.0, 1.0), "axes fraction")
        text = f"{base['label']} (baseline): {gb:.3g} GB, damage 0 →"
    axes.annotate(
        text, where[0], xycoords=where[1], textcoords="offset points", xytext=(-4, -12),
        fontsize=8, color=BASE, ha="right",
    )
