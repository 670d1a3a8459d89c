"""The HTML page of `ggflip report`: the noise floor's row and the verdict table the JSON and
Markdown have, the subject chart ranked by the Wilson lower bound, and chart labels that do not
overlap, measured on each chart's own drawn geometry."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from ggflip.cli.main import main  # noqa: E402
from ggflip.errors import ExitCode  # noqa: E402
from ggflip.reports.generation import kl_figure  # noqa: E402
from ggflip.reports.pages import render_html  # noqa: E402
from ggflip.reports.plots import (  # noqa: E402
    SUBJECT_CAPTION,
    margin_plot,
    overlaps,
    subject_plot,
    subject_ranking,
)
from tests.test_backend_registry import _fake_files  # noqa: E402

Z = 1.959963984540054


def _fake_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> Path:
    """A run of the fake backend's set (F16, Q1, Q2) on 24 questions, saved as JSON."""
    models, questions = _fake_files(tmp_path)
    out = tmp_path / "run.json"
    argv = ["run", "--models", str(models), "--data", str(questions), "--no-cache"]
    code = main([*argv, "--out", str(out), *flags])
    assert code == ExitCode.OK, capsys.readouterr().err
    capsys.readouterr()
    return out


def _rows_of(page: str, first_header: str, second_header: str) -> list[str]:
    """The `<tr>` texts of the HTML table whose header starts with these two cells."""
    start = page.index(f"<th>{first_header}</th><th>{second_header}</th>")
    body = page[start : page.index("</table>", start)]
    return body.split("<tr>")[1:]


class TestFloorAndVerdicts:
    """What the JSON and Markdown say about the floor, the page says too."""

    def test_the_page_has_the_floor_row_and_one_verdict_row_per_quant(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        document = json.loads(_fake_report(tmp_path, capsys, "--floor").read_text())
        floor = document["floor"]
        assert floor["label"] == "F16 (floor)"
        page = render_html(document)
        summary = _rows_of(page, "model", "accuracy")
        assert summary[1].startswith(f"<td>{floor['label']}</td>")  # after the baseline's row
        files = _rows_of(page, "model", "bits/weight")
        assert [r.split("</td>")[0] for r in files] == [
            "<td>F16 (baseline)",
            "<td>F16 (floor)",
            "<td>Q1",
            "<td>Q2",
        ]
        assert "<h2>Against the noise floor</h2>" in page
        assert f"<p>{document['floor_method']}.</p>" in page
        verdicts = _rows_of(page, "model", "verdict")
        assert len(verdicts) == len(document["quants"]) == 2
        for row, quant in zip(verdicts, document["quants"]):
            cells = [c.removeprefix("<td>") for c in row.split("</td>")[:6]]
            assert cells[0] == quant["label"] and cells[1] == quant["verdict"]
            assert cells[4] == f"{quant['floor_flips_p']:.3g}"
            assert cells[5] == f"{quant['floor_kl_p']:.3g}"

    def test_without_a_floor_there_is_no_verdict_table(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        document = json.loads(_fake_report(tmp_path, capsys).read_text())
        assert document["floor"] is None
        page = render_html(document)
        assert "noise floor" not in page and "(floor)" not in page


def _wilson_low(flips: int, n: int) -> float:
    """The lower end of the 95% Wilson interval by bisection: the p < p̂ at which the score
    statistic (p̂ − p)² · n / (p (1 − p)) reaches z² (a second implementation)."""
    phat = flips / n
    if phat == 0:
        return 0.0
    low, high = 1e-15, phat
    for _ in range(200):
        mid = (low + high) / 2
        if (phat - mid) ** 2 * n > Z * Z * mid * (1 - mid):
            low = mid
        else:
            high = mid
    return (low + high) / 2


GROUPS = [
    {"name": "one of one", "n": 1, "flips": 1},
    {"name": "ten of twenty", "n": 20, "flips": 10},
    {"name": "two of two", "n": 2, "flips": 2},
    {"name": "eight of forty", "n": 40, "flips": 8},
    {"name": "empty", "n": 0, "flips": 0},
    {"name": "three of three", "n": 3, "flips": 3},
    {"name": "none of five", "n": 5, "flips": 0},
]


class TestSubjectRanking:
    """Subjects ranked by the lower end of their flip rate's 95% Wilson interval."""

    def test_the_bisection_gives_the_known_bounds(self) -> None:
        # 1 of 1: (1 + z²/2 − z·√(z²/4)) / (1 + z²) = 1 / (1 + z²)
        assert _wilson_low(1, 1) == pytest.approx(1 / (1 + Z * Z), abs=1e-12)
        assert _wilson_low(10, 20) == pytest.approx(0.29929800, abs=1e-7)

    def test_order_on_hand_made_subjects(self) -> None:
        lows = {g["name"]: _wilson_low(g["flips"], g["n"]) for g in GROUPS if g["n"]}
        expected = sorted(lows, key=lambda name: -lows[name])
        # by hand: 3/3 0.438, 2/2 0.342, 10/20 0.299, 1/1 0.207, 8/40 0.105, 0/5 0
        assert expected == [
            "three of three",
            "two of two",
            "ten of twenty",
            "one of one",
            "eight of forty",
            "none of five",
        ]
        assert [g["name"] for g in subject_ranking(GROUPS)] == expected
        assert [g["name"] for g in subject_ranking(GROUPS, 2)] == expected[:2]

    def test_a_tie_goes_to_more_flips(self) -> None:
        same = [{"name": "a", "n": 4, "flips": 0}, {"name": "b", "n": 9, "flips": 0}]
        assert [g["name"] for g in subject_ranking(same)] == ["a", "b"]  # then by name
        assert [g["name"] for g in subject_ranking([*same[::-1]])] == ["a", "b"]

    def test_the_chart_draws_them_in_that_order_and_says_so(self) -> None:
        document: dict[str, Any] = {
            "quants": [{"label": "Q2_K", "flips": 0.3, "by_subject": GROUPS}]
        }
        figure, axes = plt.subplots()
        subject_plot(axes, document)
        ticks = sorted(axes.get_yticklabels(), key=lambda t: -t.get_position()[1])
        assert [t.get_text() for t in ticks][:3] == [
            "three of three (3/3)",
            "two of two (2/2)",
            "ten of twenty (10/20)",
        ]
        plt.close(figure)
        assert "Wilson" in SUBJECT_CAPTION and "lower end" in SUBJECT_CAPTION


LABELS = [
    "F16 (self)",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q4_K_M (≈ source)",
    "Q3_K_M",
    "Q2_K",
    "IQ2_XXS (imatrix)",
    "IQ1_S (imatrix, 2 experts)",
]


def _gen_document(labels: list[str]) -> dict[str, Any]:
    return {
        "quants": [
            {"label": label, "kl_mean": 10.0 ** (i - 8), "top1_agreement": 1 - i / 20}
            for i, label in enumerate(labels)
        ]
    }


class TestLabelsDoNotOverlap:
    """Each chart's labels, as drawn, are pairwise disjoint."""

    @pytest.mark.parametrize("n", [1, 3, 9])
    def test_the_generation_kl_chart(self, n: int) -> None:
        figure = kl_figure(_gen_document(LABELS[:n]))
        (axes,) = figure.axes
        assert overlaps(figure, list(axes.get_yticklabels())) == []
        assert overlaps(figure, list(axes.texts)) == []
        assert len(axes.texts) == n
        plt.close(figure)

    def test_the_check_sees_the_old_layout_overlap(self) -> None:
        """The same labels on one x axis, as the chart had them, do collide."""
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        axes.bar(LABELS, [1.0] * len(LABELS))
        assert overlaps(figure, list(axes.get_xticklabels())) != []
        plt.close(figure)

    def test_the_margin_chart(self) -> None:
        buckets = [
            {"lo": lo, "hi": hi, "n": 50, "flips": 5, "flip_rate": 0.1}
            for lo, hi in zip(
                [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75], [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1]
            )
        ]
        document = {"quants": [{"label": lab, "margin_buckets": buckets} for lab in LABELS[:6]]}
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        margin_plot(axes, document)
        assert overlaps(figure, list(axes.get_xticklabels())) == []
        plt.close(figure)


def test_wilson_low_matches_the_closed_form_elsewhere() -> None:
    """The bisection against the closed form at a few more points (guards the helper)."""
    for flips, n in ((3, 7), (0, 4), (12, 12), (40, 300)):
        phat = flips / n
        centre = phat + Z * Z / (2 * n)
        half = Z * math.sqrt(phat * (1 - phat) / n + Z * Z / (4 * n * n))
        closed = max(0.0, (centre - half) / (1 + Z * Z / n))
        assert _wilson_low(flips, n) == pytest.approx(closed, abs=1e-9)
