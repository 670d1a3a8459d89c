"""The four matplotlib plots of a run report, each drawn onto given axes from the report's JSON."""

from __future__ import annotations

from typing import Any

import numpy as np

from ggflip.scoring.stats import spearman


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
    base = document.get("baseline") or {}
    if base.get("bits_per_weight"):
        axes.axvline(base["bits_per_weight"], color="#d62728", linestyle=":", linewidth=1)
        axes.annotate(
            f"{base['label']} (KL 0)",
            (base["bits_per_weight"], 1.0),
            xycoords=("data", "axes fraction"),
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
    axes.legend(fontsize=7, ncols=2, loc="upper right")
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


def subject_plot(axes: Any, document: dict[str, Any], limit: int = 15) -> None:
    """The most damaged quant's flip rate per subject (95% Wilson intervals), worst first."""
    quants = [q for q in document["quants"] if q.get("by_subject") and q.get("flips") is not None]
    if not quants:
        _empty(axes, "no per-subject breakdown in this report")
        return
    quant = max(quants, key=lambda q: q["flips"])
    groups = quant["by_subject"][:limit]
    rates = np.array([100 * (g["flip_rate"] or 0) for g in groups])
    ci = np.array([[100 * v for v in g["flip_rate_ci"]] for g in groups])
    y = np.arange(len(groups))[::-1]
    axes.barh(y, rates, color="#d62728", alpha=0.8)
    axes.errorbar(
        rates, y, xerr=[rates - ci[:, 0], ci[:, 1] - rates], fmt="none", ecolor="#555", capsize=2
    )
    axes.set_yticks(y, [f"{g['name']} (n={g['n']})" for g in groups], fontsize=7)
    axes.set_xlabel(f"{quant['label']}: flip rate, % (95% Wilson interval)")
    axes.grid(True, axis="x", alpha=0.3)
