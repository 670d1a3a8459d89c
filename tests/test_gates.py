"""`--fail-if` (`ggflip.scoring.gates`, `ggflip.cli.gates`): parsing with "did you mean",
evaluation on synthetic reports, and the exit code of `run` and `kld` on the fake backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ggflip.cli.main import main
from ggflip.errors import ExitCode, UsageError
from ggflip.scoring.gates import failures, parse_gate, parse_gates
from tests.test_backend_registry import _fake_files

REPORT: dict[str, Any] = {
    "quants": [
        {"label": "Q8_0", "kl_mean": 0.0019, "flips": 0.017, "verdict": "different",
         "equivalence": {"verdict": "undecided",
                         "criteria": {"accuracy": {"verdict": "undecided"},
                                      "kl_mean": {"verdict": "equivalent"}}}},
        {"label": "Q2_K", "kl_mean": 0.455, "flips": 0.493, "verdict": "different",
         "equivalence": {"verdict": "different",
                         "criteria": {"accuracy": {"verdict": "different"},
                                      "kl_mean": {"verdict": "different"}}}},
        {"label": "broken", "kl_mean": None, "flips": 0.0, "verdict": "indistinguishable"},
    ],
    "floor": {"label": "F16 (floor)", "kl_mean": 5.0},
}


@pytest.mark.parametrize(
    ("condition", "failing"),
    [
        ("kl_mean>0.01", ["Q2_K", "broken"]),  # a null value cannot be shown to pass
        ("kl_mean>=0.455", ["Q2_K", "broken"]),
        ("kl_mean<0.002", ["Q8_0", "broken"]),
        ("flips<=0", ["broken"]),
        ("flips != 0.017", ["Q2_K", "broken"]),
        ("flips=0.017", ["Q8_0"]),
        ("verdict=different", ["Q8_0", "Q2_K"]),
        ("verdict!=indistinguishable", ["Q8_0", "Q2_K"]),
        ("equivalence!=equivalent", ["Q8_0", "Q2_K", "broken"]),
        ("equivalence=different", ["Q2_K", "broken"]),
        ("equivalence.kl_mean=equivalent", ["Q8_0", "broken"]),
        ("equivalence.accuracy!=equivalent", ["Q8_0", "Q2_K", "broken"]),
    ],
)
def test_conditions_on_a_synthetic_report(condition: str, failing: list[str]) -> None:
    lines = failures(REPORT, [parse_gate(condition)])
    assert [line.split(":", 1)[0] for line in lines] == failing  # the floor is never gated


def test_a_failure_line_names_quant_value_and_condition() -> None:
    assert failures(REPORT, parse_gates(["kl_mean>0.01"]))[0] == (
        "Q2_K: kl_mean = 0.455 (kl_mean>0.01)"
    )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("kl_maen>0.01", "unknown metric 'kl_maen'; did you mean 'kl_mean'"),
        ("kl_mean~0.01", "expected NAME OP VALUE"),
        ("kl_mean>small", "'small' is not a number"),
        ("verdict=same", "verdict takes = or != and one of indistinguishable, different"),
        ("verdict>different", "verdict takes = or !="),
        ("equivalence.acuracy=equivalent", "no criterion 'acuracy'; did you mean 'accuracy'"),
        ("verdit=different", "did you mean 'verdict'"),
    ],
)
def test_bad_conditions_are_one_line_usage_errors(condition: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_gate(condition)


def test_a_metric_the_mode_does_not_measure_is_refused() -> None:
    with pytest.raises(UsageError, match="ppl_ratio is not measured in choice mode"):
        parse_gate("ppl_ratio>1.01", "choice")
    assert parse_gate("ppl_ratio>1.01", "corpus").value == 1.01


class TestExitCode:
    """`--fail-if` on the CLI, the fake backend's Q1 (noise 0.1) and Q2 (noise 0.2)."""

    def test_run_exits_threshold_after_writing_the_report(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, questions = _fake_files(tmp_path)
        base = ["run", "--models", str(models), "--data", str(questions), "--no-cache", "--json"]
        assert main(base) == ExitCode.OK
        report = json.loads(capsys.readouterr().out)
        kl = {q["label"]: q["kl_mean"] for q in report["quants"]}
        between = (kl["Q1"] + kl["Q2"]) / 2  # fails Q2 only
        code = main([*base, "--fail-if", f"kl_mean>{between}", "--fail-if", "flips>1"])
        captured = capsys.readouterr()
        assert code == ExitCode.THRESHOLD == 10
        assert json.loads(captured.out)["quants"][1]["label"] == "Q2"  # the report came first
        lines = [x for x in captured.err.splitlines() if x.startswith("ggflip: fail-if:")]
        assert lines == [f"ggflip: fail-if: Q2: kl_mean = {kl['Q2']:.4g} (kl_mean>{between})"]
        assert main([*base, "--fail-if", f"kl_mean>{kl['Q2']}"]) == ExitCode.OK

    def test_a_misspelt_metric_fails_before_the_run(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, questions = _fake_files(tmp_path)
        code = main(["run", "--models", str(models), "--data", str(questions), "--no-cache",
                     "--fail-if", "kl_maen>0.01"])
        captured = capsys.readouterr()
        assert code == ExitCode.USAGE
        assert captured.out == ""
        assert captured.err.strip().splitlines() == [
            "ggflip: error: --fail-if 'kl_maen>0.01': unknown metric 'kl_maen'; did you mean "
            "'kl_mean' or 'kl_max' or 'kl_median'?"
        ]

    def test_verdict_needs_the_floor(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, questions = _fake_files(tmp_path)
        code = main(["run", "--models", str(models), "--data", str(questions), "--no-cache",
                     "--fail-if", "verdict=different"])
        assert code == ExitCode.USAGE
        assert "needs --floor" in capsys.readouterr().err

    def test_kld_exits_threshold(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        models, _ = _fake_files(tmp_path)
        text = tmp_path / "corpus.txt"
        text.write_text(" ".join(f"w{(i * 7) % 50}" for i in range(200)))
        base = ["kld", "--models", str(models), "--text", str(text), "--ctx", "16", "--no-cache",
                "--json"]
        code = main([*base, "--fail-if", "kl_mean>0", "--margin-kl", "0.5"])
        captured = capsys.readouterr()
        assert code == ExitCode.THRESHOLD
        report = json.loads(captured.out)
        assert [q["equivalence"]["criteria"]["kl_mean"]["margin"] for q in report["quants"]] == [
            0.5, 0.5
        ]
        assert captured.err.count("ggflip: fail-if:") == 2
        assert main([*base, "--fail-if", "kl_mean<0"]) == ExitCode.OK


def test_margin_flags_reach_the_report_and_bad_ones_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models, questions = _fake_files(tmp_path)
    base = ["run", "--models", str(models), "--data", str(questions), "--no-cache"]
    code = main([*base, "--json", "--margin-accuracy", "5", "--margin-flips", "3"])
    assert code == ExitCode.OK
    criteria = json.loads(capsys.readouterr().out)["quants"][0]["equivalence"]["criteria"]
    assert (criteria["accuracy"]["margin"], criteria["flips"]["margin"]) == (0.05, 0.03)
    assert criteria["kl_mean"]["margin"] == 0.01  # the default
    assert main([*base, "--margin-accuracy", "0"]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == (
        "ggflip: error: --margin-accuracy must be between 0 and 100 (exclusive), got 0"
    )


def test_verdicts_a_mode_never_gives_are_refused() -> None:
    with pytest.raises(UsageError, match="the noise floor's verdict is multiple choice's only"):
        parse_gate("verdict=different", "corpus")
    with pytest.raises(UsageError, match="corpus mode has no answers, only kl_mean"):
        parse_gate("equivalence.flips!=equivalent", "corpus")
    assert parse_gate("equivalence.kl_mean!=equivalent", "corpus").name == "equivalence.kl_mean"
    assert parse_gate("verdict=different", "choice").value == "different"
