"""What the multiple-choice report says in words under its table: accuracy within noise while
flips are not, what `(≈ source)` means, seconds per model, and the verdict beside the floor's
own flips and KL (no KL/floor ratio)."""

from __future__ import annotations

import dataclasses
import io
import math
from fractions import Fraction
from pathlib import Path

import pytest
from rich.console import Console

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.report import Report
from ggflip.choice.setup import resolve_run_spec
from ggflip.reports.choice import render_markdown, render_report
from ggflip.reports.notes import SOURCE_NOTE, accuracy_noise_note
from tests.tui_helpers import FAKE_MODELS, write_fake_set


def _mcnemar_two_sided(lost: int, gained: int) -> float:
    """Exact McNemar p by hand: twice the smaller binomial(n, 1/2) tail, capped at 1."""
    n, k = lost + gained, min(lost, gained)
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Report:
    """A fake run with the noise floor: F16, Q8_0, Q2_K on 40 questions."""
    monkeypatch.chdir(tmp_path)
    options = dataclasses.replace(write_fake_set(tmp_path), floor=True)
    events = list(run_comparison(resolve_run_spec(options), FakeBackendFactory(FAKE_MODELS)))
    return events[-1].report  # type: ignore[attr-defined,no-any-return]


def _with(report: Report, which: str, **changes: object) -> Report:
    quants = [dataclasses.replace(q, **changes) if q.label == which else q for q in report.quants]
    return dataclasses.replace(report, quants=quants)


def _terminal(report: Report) -> str:
    screen = io.StringIO()
    render_report(report, Console(file=screen, width=400, color_system=None), flip_rows=0)
    return screen.getvalue()


def test_flips_hidden_by_accuracy_are_said_in_words(report: Report) -> None:
    """48 answers lost and 40 regained on 300 questions: -2.7 pt, McNemar p = 0.46 by hand,
    29.3 % flipped and far above the floor: named. Q8_0, with a McNemar p below 0.05, is not."""
    p = _mcnemar_two_sided(48, 40)
    assert 0.4 < p < 0.5
    hidden = _with(
        report,
        "Q2_K",
        n_flips_lost=48,
        n_flips_gained=40,
        flips=88 / 300,
        delta_accuracy=-8 / 300,
        mcnemar_p=p,
        floor_flips_p=1e-20,
    )
    hidden = _with(hidden, "Q8_0", n_flips_lost=9, n_flips_gained=0, mcnemar_p=0.0039)
    note = accuracy_noise_note(hidden.quants, with_floor=True)
    assert note == (
        "Accuracy is within noise here, flips are not: Q2_K -2.7 pt (McNemar p = 0.46) with "
        "29.3% of answers flipped (48 c→i, 40 i→c). Answers lost and regained cancel out in "
        "accuracy, so rank these by flips and KL, not by accuracy."
    )
    assert note in _terminal(hidden) and f"\n{note}\n" in render_markdown(hidden)


def test_no_sentence_when_accuracy_tells_or_flips_are_floor_noise(report: Report) -> None:
    significant = _with(report, "Q2_K", n_flips_lost=30, n_flips_gained=2, mcnemar_p=1e-6)
    floorlike = _with(
        report, "Q2_K", n_flips_lost=2, n_flips_gained=2, mcnemar_p=1.0, floor_flips_p=0.31
    )
    none = _with(report, "Q2_K", n_flips_lost=0, n_flips_gained=0, mcnemar_p=1.0)
    for case in (significant, floorlike, none):
        case = _with(case, "Q8_0", n_flips_lost=0, n_flips_gained=0)
        assert accuracy_noise_note(case.quants, with_floor=True) == ""
        assert "within noise" not in _terminal(case)


def test_source_mark_is_explained_only_where_it_shows(report: Report) -> None:
    assert SOURCE_NOTE not in _terminal(report) and SOURCE_NOTE not in render_markdown(report)
    marked = _with(report, "Q8_0", label="Q4_K_M (≈ source)")
    assert SOURCE_NOTE in _terminal(marked) and SOURCE_NOTE in render_markdown(marked)
    assert SOURCE_NOTE.startswith("(≈ source): the baseline was made from this quant's own")


def test_seconds_per_model_and_the_verdict_beside_the_floor(report: Report) -> None:
    """Every row has its seconds (the baseline's too); the verdict table shows each quant's
    flips and KL mean next to the floor's, and no KL/floor ratio."""
    assert report.baseline is not None and report.floor is not None
    timed = dataclasses.replace(
        report,
        baseline=dataclasses.replace(report.baseline, seconds=12.34),
        floor=dataclasses.replace(report.floor, seconds=5.0, n_flips_lost=1, kl_mean=2.5e-6),
    )
    timed = _with(timed, "Q8_0", seconds=78.26, n_flips_lost=3, n_flips_gained=1, kl_mean=0.034)
    markdown = render_markdown(timed)
    header = next(line for line in markdown.splitlines() if line.startswith("| model | acc"))
    assert header.endswith("| seconds |")
    rows: dict[str, str] = {}
    for line in markdown.splitlines():  # the summary table's row of each model comes first
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0][2:], line)
    assert rows["F16 (baseline)"].endswith("| 12.3 |")
    assert rows["F16 (floor)"].endswith("| 5.0 |") and rows["Q8_0"].endswith("| 78.3 |")
    verdict_header = next(line for line in markdown.splitlines() if "| verdict |" in line)
    assert verdict_header == (
        "| model | verdict | flips vs floor | KL mean vs floor | flips p | KL p | why |"
    )
    q8 = next(line for line in markdown.splitlines() if line.startswith("| Q8_0 | different"))
    assert "| 4 vs 1 | 0.0340 vs 2.50e-6 |" in q8
    assert "×" not in markdown and "×" not in _terminal(timed)


def test_skipped_rows_are_counted_once_in_the_markdown(report: Report) -> None:
    """The selection carries `N of M rows valid`; the old separate line is left out then (and
    kept for a report whose selection does not say it)."""
    from ggflip.choice.report import SkippedRow

    skipped = (SkippedRow("q.jsonl:3", "no answer"), SkippedRow("q.jsonl:9", "not JSON"))
    counted = dataclasses.replace(
        report, skipped_rows=skipped, selection="all 40 questions; 40 of 42 rows valid"
    )
    markdown = render_markdown(counted)
    assert markdown.count("40 of 42 rows valid") == 1 and "malformed rows skipped" not in markdown
    older = dataclasses.replace(counted, selection="all 40 questions")
    assert "2 malformed rows skipped." in render_markdown(older)


def test_one_flip_is_singular_in_the_markdown(report: Report) -> None:
    q = report.quants[0]
    one = _with(report, q.label, n_flips_lost=1, n_flips_gained=0)
    two = _with(report, q.label, n_flips_lost=1, n_flips_gained=1)
    assert f"`{q.path}`: {q.n} questions, 1 flip." in render_markdown(one)
    assert f"`{q.path}`: {q.n} questions, 2 flips." in render_markdown(two)
