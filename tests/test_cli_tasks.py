"""`ggflip run --task X` for every built-in task on its fixture, through the real llama.cpp on tiny
GGUFs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.errors import ExitCode

TASKS_DIR = Path(__file__).parent / "data" / "tasks"


@pytest.fixture
def tiny_models(tmp_path: Path, tiny_gguf_dir: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        "[llama]\nn_ctx = 256\nn_batch = 256\nn_threads = 1\n\n[sets.tiny]\n"
        f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "F32" }}\n'
        f'quants = [ {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "self" }}, '
        f'{{ path = "{tiny_gguf_dir / "noisier.gguf"}", label = "noisier" }} ]\n'
    )
    return path


CASES = [
    ("mmlu", "mmlu/test.jsonl", (), "letter", 3),
    ("arc_easy", "arc_easy/test.jsonl", (), "cloze", 3),
    ("arc_challenge", "arc_challenge/test.jsonl", (), "cloze", 2),
    ("hellaswag", "hellaswag/validation.jsonl", (), "cloze", 3),
    ("piqa", "piqa/validation.jsonl", (), "cloze", 3),
    (
        "winogrande",
        "winogrande/validation.jsonl",
        ("--shots", "1", "--shots-from", str(TASKS_DIR / "winogrande/train.jsonl")),
        "cloze",
        3,
    ),
]


@pytest.mark.parametrize(("task", "data", "extra", "mode", "n"), CASES, ids=[c[0] for c in CASES])
def test_run_every_built_in_task(
    task: str,
    data: str,
    extra: tuple[str, ...],
    mode: str,
    n: int,
    tiny_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "run",
            "--models",
            str(tiny_models),
            "--task",
            task,
            "--data",
            str(TASKS_DIR / data),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            *extra,
        ]
    )
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    report = json.loads(captured.out)
    assert (report["task"], report["mode"], report["n_questions"]) == (task, mode, n)
    self_q, noisier = report["quants"]
    assert self_q["kl_max"] < 1e-6 and self_q["flips"] == 0 and self_q["same_top"] == 1.0
    assert noisier["kl_mean"] > 0
    for row in noisier["rows"]:
        if mode == "cloze":
            assert row["n_tokens"] > 1 and len(row["base_sums"]) == len(row["base_norms"]) >= 2
            rule = report["answer_rule"]
            assert row["base_choice"] == max(
                range(len(row["base_sums"])), key=lambda i: row[f"base_{rule}s"][i]
            )
        else:
            assert row["n_tokens"] == 1 and row["base_sums"] == []


def test_run_mmlu_few_shot_from_a_local_dataset_dev_split(
    tiny_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    args = [
        "run",
        "--models",
        str(tiny_models),
        "--task",
        "mmlu_5shot",
        "--shots",
        "2",
        "--data",
        f"hf:{TASKS_DIR / 'mmlu'}",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
    ]
    code = main(args)
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    report = json.loads(captured.out)
    assert report["prompt_version"] == "mmlu-letter-v1+2shot" and report["n_shots"] == 2
    zero = main(
        [
            "run",
            "--models",
            str(tiny_models),
            "--task",
            "mmlu",
            "--data",
            f"hf:{TASKS_DIR / 'mmlu'}",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
        ]
    )
    zero_report = json.loads(capsys.readouterr().out)
    assert zero == ExitCode.OK and zero_report["prompt_version"] == "mmlu-letter-v1"
    assert not zero_report["baseline"]["from_cache"]  # different shots, different cache entry


def test_bad_rows_stop_the_run_with_file_and_row(
    tiny_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "run",
        "--models",
        str(tiny_models),
        "--task-file",
        str(TASKS_DIR / "custom" / "quiz_task.toml"),
        "--no-cache",
        "--json",
    ]
    code = main(args)
    err = capsys.readouterr().err
    assert code == ExitCode.DATA
    assert (
        "quiz.csv:4: field 'prompt' is missing or empty (fix the row, or pass --skip-bad-rows)"
        in err
    )
    code = main([*args, "--skip-bad-rows"])
    captured = capsys.readouterr()
    assert code == ExitCode.OK
    report = json.loads(captured.out)
    assert report["n_questions"] == 2 and len(report["skipped_rows"]) == 3
    assert captured.err.count("skipped malformed row") == 3
