"""The generation report as Markdown: one summary table, then the changed answers per quant."""

from __future__ import annotations

from ggflip.generate.report import GenQuant, GenReport, flip_of


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def summary_rows(report: GenReport) -> list[list[str]]:
    """One row per quant: accuracy (every rule), flips, same text, divergence, KL, top-1, time."""
    rows = []
    for q in report.quants:
        accuracy = " / ".join(
            f"{name} {_num(s.baseline_accuracy, 3)}→{_num(s.accuracy, 3)}"
            for name, s in q.by_rule.items()
        )
        d = q.first_divergence
        rows.append(
            [
                q.label,
                accuracy or "–",
                f"{q.n_flips_lost}↓ {q.n_flips_gained}↑",
                _num(q.same_text, 3),
                f"{_num(d.median, 0)} ({_num(d.p10, 0)}–{_num(d.p90, 0)}), never {d.never}",
                _num(q.kl_mean, 5),
                _num(q.kl_p99, 4),
                _num(q.top1_agreement, 4),
                _num(q.delta_p_rms, 4),
                f"{q.seconds:.1f}",
            ]
        )
    return rows


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


def _changed(q: GenQuant, report: GenReport, limit: int) -> list[str]:
    lines = []
    for row in q.rows:
        flip = flip_of(row, report.answer_rule)
        if flip is None:
            continue
        answers = row.answers.get(report.answer_rule or "", ("", ""))
        lines.append(f"- `{row.id}` {flip}: gold {row.gold}, {answers[0]} → {answers[1]}")
        if len(lines) >= limit:
            break
    return lines


def render_gen_markdown(report: GenReport, flip_rows: int = 10) -> str:
    """The Markdown document of a generation report."""
    title = f"# ggflip generate: {report.set}, {report.task} ({report.n_turns} turns)"
    out = [title, "", f"Source `{report.source}`, prompt `{report.prompt_version}`.", ""]
    out.append("| " + " | ".join(SUMMARY_HEADER) + " |")
    out.append("|" + "---|" * len(SUMMARY_HEADER))
    out += ["| " + " | ".join(row) + " |" for row in summary_rows(report)]
    for q in report.quants:
        changed = _changed(q, report, flip_rows)
        if changed:
            out += ["", f"## {q.label}: flips", "", *changed]
    if report.skipped:
        out += ["", "## Skipped", ""] + [
            f"- `{s.id}` turn {s.turn}: {s.reason}" for s in report.skipped
        ]
    return "\n".join(out) + "\n"
