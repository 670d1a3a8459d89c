"""Quant against quant (`ggflip.scoring.versus.compare_quants`) on hand-made reports of each mode,
the numbers against independent computations; its table and sentence."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from ggflip.cli.main import main
from ggflip.errors import UsageError
from ggflip.reports.versus import comparison_markdown, comparison_sentence, render_comparison
from ggflip.scoring.versus import compare_quants
from tests.test_backend_registry import _fake_files


def _two_sided_sign(k: int, n: int) -> float:
    """2·P(X >= max(k, n - k)), X ~ Binomial(n, 1/2), in exact fractions."""
    top = max(k, n - k)
    tail = sum(Fraction(math.comb(n, i), 2**n) for i in range(top, n + 1))
    return float(min(Fraction(1), 2 * tail))


def _choice_report() -> dict[str, Any]:
    """40 questions, gold 0. A is right on 0-29, B on 0-19 and 30-31: A only right on 10, B only on
    2. A's KL is 0.01 everywhere; B's 0.02 except 5 questions at 0.005."""
    def rows(right: set[int], kl: list[float]) -> list[dict[str, Any]]:
        return [
            {"index": i, "gold": 0, "quant_choice": 0 if i in right else 1, "kl": kl[i]}
            for i in range(40)
        ]

    kl_b = [0.005 if i < 5 else 0.02 for i in range(40)]
    return {
        "schema": "ggflip.report/1",
        "quants": [
            {"label": "A", "rows": rows(set(range(30)), [0.01] * 40)},
            {"label": "B", "rows": rows(set(range(20)) | {30, 31}, kl_b)},
        ],
        "floor": None,
    }


def test_choice_accuracy_and_kl_by_hand() -> None:
    result = compare_quants(_choice_report(), "A", "B")
    assert (result["unit"], result["n"]) == ("questions", 40)
    accuracy = result["accuracy"]
    assert (accuracy["a"], accuracy["b"]) == (30 / 40, 22 / 40)
    assert (accuracy["a_only"], accuracy["b_only"]) == (10, 2)
    assert accuracy["difference"] == pytest.approx(8 / 40)
    assert accuracy["mcnemar_p"] == pytest.approx(_two_sided_sign(2, 12), rel=1e-12)  # 0.0386
    assert accuracy["higher"] == "A"
    low, high = accuracy["ci"]
    assert low < 8 / 40 < high and low > 0  # McNemar and Tango agree here
    kl = result["kl"]
    diff = np.array([0.005] * 5 + [-0.01] * 35)
    assert kl["difference"] == pytest.approx(diff.mean())
    half = 1.959963984540054 * diff.std(ddof=1) / math.sqrt(40)
    assert kl["ci"] == pytest.approx([diff.mean() - half, diff.mean() + half])
    assert (kl["a_lower"], kl["b_lower"]) == (35, 5)
    assert kl["sign_p"] == pytest.approx(_two_sided_sign(5, 40), rel=1e-12)
    assert kl["lower"] == "A"
    assert comparison_sentence(result) == (
        "A is closer to the baseline than B (lower KL); A is more accurate (paired tests at 0.05)."
    )
    swapped = compare_quants(_choice_report(), "B", "A")
    assert swapped["kl"]["difference"] == pytest.approx(-kl["difference"])
    assert swapped["accuracy"]["ci"] == pytest.approx([-high, -low], abs=1e-9)


def test_generation_pairs_turns_under_the_answer_rule() -> None:
    def row(index: int, turn: int, answer: str, kl: float) -> dict[str, Any]:
        answers = {"last_number": ["4", answer]}
        return {"index": index, "turn": turn, "gold": "4", "answers": answers, "kl_mean": kl}

    report = {
        "schema": "ggflip.generate/1",
        "answer_rule": "last_number",
        "quants": [
            {"label": "A", "rows": [row(0, 0, "4", 0.1), row(1, 0, "4", 0.2), row(2, 0, "5", 0.3)]},
            {"label": "B", "rows": [row(0, 0, "5", 0.2), row(1, 0, "4", 0.1)]},
        ],
    }
    result = compare_quants(report, "A", "B")
    assert (result["unit"], result["n"]) == ("turns", 2)  # turn 2 only A scored
    assert (result["accuracy"]["a_only"], result["accuracy"]["b_only"]) == (1, 0)
    assert result["kl"]["difference"] == pytest.approx(0.0)
    assert result["kl"]["sign_p"] == 1.0 and result["kl"]["lower"] is None


def test_unknown_label_and_itself_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"no quant 'AA' in the report; did you mean 'A'\?"):
        compare_quants(_choice_report(), "AA", "B")
    with pytest.raises(UsageError, match="not 'A' with itself"):
        compare_quants(_choice_report(), "A", "A")


def test_corpus_reports_pair_chunks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models, _ = _fake_files(tmp_path)
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(f"w{(i * 7) % 50}" for i in range(200)))
    main(["kld", "--models", str(models), "--text", str(text), "--ctx", "16", "--no-cache",
          "--json"])
    report = json.loads(capsys.readouterr().out)
    chunks = [q["chunk_kl"] for q in report["quants"]]
    assert len(chunks[0]) == report["n_chunks"]
    assert np.mean(chunks[0]) == pytest.approx(report["quants"][0]["kl_mean"], rel=1e-9)
    result = compare_quants(report, "Q1", "Q2")
    assert result["accuracy"] is None and result["n"] == report["n_chunks"]
    assert result["kl"]["lower"] == "Q1"  # noise 0.1 against 0.2
    console = Console(record=True, width=160)
    render_comparison(result, console)
    text_out = console.export_text()
    assert "Q1 against Q2 on the same" in text_out and "sign test p" in text_out
    assert comparison_markdown(result).startswith("## Q1 against Q2")
