"""The matplotlib plots of a run report, each drawn onto given axes from the report's JSON, and
the geometry check their tests use (`overlaps`: do any two texts' drawn boxes intersect)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ggflip.scoring.stats import spearman, wilson_interval


def png_base64(figure: Any) -> str:
    """A matplotlib figure as a base64 PNG, for a `data:` URI in a self-contained page."""
    import base64
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _quants_with(document: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    return [q for q in document["quants"] if all(q.get(key) is not None for key in keys)]


def _empty(axes: Any, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#777")
    axes.set_xticks([])
    axes.set_yticks([])


def bpw_limits(bits_per_weight: Any) -> tuple[float, float]:
    """The x range of the KL plot: the quants' bits per weight with a margin on each side (at
    least a quarter bit), so points that differ by little are still spread out."""
    low, high = float(np.min(bits_per_weight)), float(np.max(bits_per_weight))
    pad = max(0.15 * (high - low), 0.25)
    return low - pad, high + pad


def kl_vs_bpw_plot(axes: Any, document: dict[str, Any]) -> None:
    """Mean KL (with its 95% interval) against bits per weight, one labelled point per quant."""
    quants = _quants_with(document, "bits_per_weight", "kl_mean")
    if not quants:
        _empty(axes, "no bits-per-weight facts in this report")
        return
    x = np.array([q["bits_per_weight"] for q in quants])
    y = np.array([q["kl_mean"] for q in quants])
    ci = np.array([q["kl_mean_ci"] or [m, m] for q, m in zip(quants, y)], dtype=float)
    floor = max(float(y[y > 0].min()) / 10 if (y > 0).any() else 1e-6, 1e-9)
    y_shown = np.maximum(y, floor)
    errors = np.vstack(
        [
            np.clip(y_shown - np.maximum(ci[:, 0], floor), 0, None),
            np.clip(ci[:, 1] - y_shown, 0, None),
        ]
    )
    order = np.argsort(x)
    axes.plot(x[order], y_shown[order], color="#999", linewidth=1, zorder=1)
    axes.errorbar(x, y_shown, yerr=errors, fmt="o", color="#1f77b4", capsize=3, zorder=2)
    for q, xi, yi in zip(quants, x, y_shown):
        axes.annotate(q["label"], (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=8)
    # The axis fits the quants: with a 262k-token embedding kept at Q8_0 they can all sit within
    # 2 bits of each other, which a 0-to-16 axis would squeeze into a corner.
    low, high = bpw_limits(x)
    axes.set_xlim(low, high)
    base = document.get("baseline") or {}
    base_bpw = base.get("bits_per_weight")
    if base_bpw and low <= base_bpw <= high:
        axes.axvline(base_bpw, color="#d62728", linestyle=":", linewidth=1)
        axes.annotate(
            f"{base['label']} (KL 0)",
            (base_bpw, 1.0),
            xycoords=("data", "axes fraction"),
            textcoords="offset points",
            xytext=(-4, -12),
            fontsize=8,
            color="#d62728",
            ha="right",
        )
    elif base_bpw:
        axes.annotate(
            f"{base['label']}: {base_bpw:.2f} bpw, KL 0 →",
            (1.0, 1.0),
            xycoords="axes fraction",
            textcoords="offset points",
            xytext=(-4, -12),
            fontsize=8,
            color="#d62728",
            ha="right",
        )
    axes.set_yscale("log")
    axes.set_xlabel("bits per weight")
    axes.set_ylabel("mean KL(baseline ‖ quant), nats (log)")
    axes.grid(True, which="major", alpha=0.3)


def flips_vs_kl_plot(axes: Any, document: dict[str, Any]) -> None:
    """% flips against mean KL per quant, titled with their Spearman rank correlation."""

    quants = _quants_with(document, "kl_mean", "flips")
    if not quants:
        _empty(axes, "no quants")
        return
    x = [q["kl_mean"] for q in quants]
    y = [100 * q["flips"] for q in quants]
    axes.scatter(x, y, color="#ff7f0e", zorder=2)
    for q, xi, yi in zip(quants, x, y):
        axes.annotate(q["label"], (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
    rho = spearman(x, [q["flips"] for q in quants])
    axes.set_title(
        "Spearman ρ = n/a" if np.isnan(rho) else f"Spearman ρ = {rho:.2f} (n = {len(quants)})",
        fontsize=10,
    )
    if min(x) > 0:
        axes.set_xscale("log")
    axes.set_xlabel("mean KL(baseline ‖ quant), nats")
    axes.set_ylabel("flips, % of questions")
    axes.grid(True, alpha=0.3)


def margin_plot(axes: Any, document: dict[str, Any]) -> None:
    """Flip rate per bucket of the baseline's top margin, one bar group per bucket, one bar per
    quant."""
    quants = document["quants"]
    if not quants or not quants[0]["margin_buckets"]:
        _empty(axes, "no quants")
        return
    buckets = quants[0]["margin_buckets"]
    positions = np.arange(len(buckets))
    width = 0.8 / len(quants)
    for index, quant in enumerate(quants):
        rates = [100 * (b["flip_rate"] or 0) if b["n"] else np.nan for b in quant["margin_buckets"]]
        axes.bar(
            positions + (index - (len(quants) - 1) / 2) * width, rates, width, label=quant["label"]
        )
    axes.set_xticks(
        positions, [f"{b['lo']:.2f}–{b['hi']:.2f}\nn={b['n']}" for b in buckets], fontsize=8
    )
    axes.set_xlabel("baseline's top margin (best option's probability − second best)")
    axes.set_ylabel("flip rate, %")
    # Above the plot, not over it: the first buckets' bars are the tallest and fill the corner.
    axes.legend(
        fontsize=7,
        ncols=min(len(quants), 6),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )
    axes.grid(True, axis="y", alpha=0.3)


def accuracy_plot(axes: Any, document: dict[str, Any]) -> None:
    """Accuracy of the baseline and each quant with 95% Wilson intervals, as horizontal bars."""
    entries = ([document["baseline"]] if document.get("baseline") else []) + list(
        document["quants"]
    )
    if not entries:
        _empty(axes, "nothing scored")
        return
    labels = [
        e["label"] + (" (baseline)" if i == 0 and document.get("baseline") else "")
        for i, e in enumerate(entries)
    ]
    accuracy = np.array([100 * e["accuracy"] for e in entries])
    ci = np.array([[100 * v for v in (e["accuracy_ci"] or [e["accuracy"]] * 2)] for e in entries])
    y = np.arange(len(entries))[::-1]
    colors = [
        "#d62728" if i == 0 and document.get("baseline") else "#2ca02c" for i in range(len(entries))
    ]
    axes.errorbar(
        accuracy,
        y,
        xerr=[accuracy - ci[:, 0], ci[:, 1] - accuracy],
        fmt="none",
        ecolor="#555",
        capsize=3,
    )
    axes.scatter(accuracy, y, color=colors, zorder=2)
    if document.get("baseline"):
        axes.axvline(accuracy[0], color="#d62728", linestyle=":", linewidth=1)
    axes.set_yticks(y, labels, fontsize=8)
    axes.set_xlabel("accuracy, % (95% Wilson interval)")
    axes.grid(True, axis="x", alpha=0.3)


def subject_ranking(groups: list[dict[str, Any]], limit: int = 15) -> list[dict[str, Any]]:
    """The `limit` subjects whose flip rate is surely high: ranked by the lower end of the 95%
    Wilson interval of the flip rate (ties: more flips, then name), so that one flip in one
    question (100 %, but a lower end of 21 %) does not outrank 10 flips in 20 questions (30 %).
    Subjects with no question are left out."""

    def key(group: dict[str, Any]) -> tuple[float, int, str]:
        low, _ = wilson_interval(int(group["flips"]), int(group["n"]))
        return (-low, -int(group["flips"]), str(group["name"]))

    return sorted((g for g in groups if g["n"]), key=key)[:limit]


SUBJECT_CAPTION = (
    "Flip rate by subject, most damaged quant: the 15 subjects with the highest lower end of the "
    "95% Wilson interval (a subject with few questions needs many flips to rank)"
)


def subject_plot(axes: Any, document: dict[str, Any], limit: int = 15) -> None:
    """The most damaged quant's flip rate per subject (95% Wilson intervals), the `limit`
    subjects with the highest lower bound first (`subject_ranking`)."""
    quants = [q for q in document["quants"] if q.get("by_subject") and q.get("flips") is not None]
    if not quants:
        _empty(axes, "no per-subject breakdown in this report")
        return
    quant = max(quants, key=lambda q: q["flips"])
    groups = subject_ranking(quant["by_subject"], limit)
    rates = np.array([100 * g["flips"] / g["n"] for g in groups])
    ci = np.array([[100 * v for v in wilson_interval(g["flips"], g["n"])] for g in groups])
    y = np.arange(len(groups))[::-1]
    axes.barh(y, rates, color="#d62728", alpha=0.8)
    errors = np.clip([rates - ci[:, 0], ci[:, 1] - rates], 0, None)  # float round-off at 0 or 1
    axes.errorbar(rates, y, xerr=errors, fmt="none", ecolor="#555", capsize=2)
    axes.set_yticks(y, [f"{g['name']} ({g['flips']}/{g['n']})" for g in groups], fontsize=7)
    axes.set_xlabel(
        f"{quant['label']}: flip rate, % (95% Wilson interval), ranked by the interval's lower end"
    )
    axes.grid(True, axis="x", alpha=0.3)


def overlaps(figure: Any, texts: list[Any]) -> list[tuple[str, str]]:
    """The pairs of non-empty `texts` whose boxes, as drawn on `figure`, intersect."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    shown = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(shown)
        for b, box_b in shown[i + 1 :]
        if box_a.overlaps(box_b)
    ]
