"""Kill a real `ggflip run` (a subprocess on the tiny GGUFs) at random questions, resume it, and
check the final report equals an uninterrupted run's, with nothing finished scored again."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ggflip.config.models_toml import default_cache_dir
from ggflip.errors import ExitCode

N_QUESTIONS = 48
QUANTS = ("noisy", "q8_0", "noisier")
BASE_LABEL = "baseline"
TIMING = {"seconds", "questions_per_second", "from_cache"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_setup(tiny_gguf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with models.toml (baseline + 3 quants) and N_QUESTIONS questions."""
    folder = tmp_path_factory.mktemp("resume")
    lines = [
        "[llama]",
        "n_ctx = 256",
        "n_batch = 256",
        "n_threads = 1",
        "[sets.tiny]",
        f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "{BASE_LABEL}" }}',
        "quants = [",
    ]
    lines += [f'  {{ path = "{tiny_gguf_dir / (q + ".gguf")}", label = "{q}" }},' for q in QUANTS]
    (folder / "models.toml").write_text("\n".join(lines + ["]"]) + "\n")
    with (folder / "q.jsonl").open("w") as out:
        for i in range(N_QUESTIONS):
            row = {
                "question": f"What is {i} of the {i % 7}?",
                "choices": ["is", "the", "of", str(i)],
                "answer": i % 4,
            }
            out.write(json.dumps(row) + "\n")
    return folder


def _command(folder: Path, cache: Path) -> list[str]:
    data = (
        ["--data", str(folder / "q.jsonl")]
        if (folder / "q.jsonl").exists()
        else ["--limit", "8", "--seed", "3"]
    )
    return [
        sys.executable,
        "-m",
        "ggflip.cli.main",
        "run",
        "--models",
        str(folder / "models.toml"),
        *data,
        "--cache-dir",
        str(cache),
        "--json",
        "--batch-size",
        "1" if data[0] == "--data" else "2",
    ]


def _done(cache: Path, n_questions: int = N_QUESTIONS) -> int:
    """Questions finished so far: rows in the run store, plus the baseline once it is in the
    cache."""
    cached = n_questions if any((cache / "baselines").glob("*.json")) else 0
    try:
        with (
            closing(
                sqlite3.connect(f"file:{cache / 'runs.sqlite'}?mode=ro", uri=True, timeout=5)
            ) as db,
            db,
        ):
            # Once the baseline is cached its stored rows are redundant (and about to be dropped).
            stored = db.execute(
                "SELECT count(*) FROM rows WHERE label != ? OR ? = 0", (BASE_LABEL, cached)
            ).fetchone()[0]
    except sqlite3.Error:
        stored = 0
    return cached + stored


def _stored_by_label(cache: Path) -> dict[str, int]:
    with closing(sqlite3.connect(cache / "runs.sqlite")) as db, db:
        return dict(db.execute("SELECT label, count(*) FROM rows GROUP BY label").fetchall())


def _run(
    folder: Path,
    cache: Path,
    stop_at: int | None = None,
    sig: int = signal.SIGKILL,
    n_questions: int = N_QUESTIONS,
) -> tuple[int, str, str]:
    """Run ggflip; with `stop_at`, send `sig` once that many questions are stored (polling the
    store)."""
    slow = Path(__file__).parent / "slow_site"  # 5 ms per llama.cpp call, so signals land mid-run
    env = {**os.environ, "PYTHONPATH": f"{slow}{os.pathsep}{ROOT}", "COLUMNS": "200"}
    out, err = cache.parent / f"{cache.name}.out", cache.parent / f"{cache.name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        # A SIGINT disposition of "ignore" is inherited across exec (some test runners and earlier
        # tests
        # leave it so); restore the default so Python in the child turns SIGINT into
        # KeyboardInterrupt.
        process = subprocess.Popen(
            _command(folder, cache),
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=ROOT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        while stop_at is not None and process.poll() is None:
            if _done(cache, n_questions) >= stop_at:
                process.send_signal(sig)
                break
            time.sleep(0.002)
        code = process.wait(timeout=1800)
    return code, out.read_text(), err.read_text()


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _restored(stderr: str) -> dict[str, int]:
    return {
        label: int(n) for label, n in re.findall(r"(\S+): (\d+) of \d+ questions restored", stderr)
    }


@pytest.fixture(scope="module")
def reference(run_setup: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    code, out, err = _run(run_setup, tmp_path_factory.mktemp("ref") / "cache")
    assert code == ExitCode.OK, err
    return json.loads(out)


def _expected_restores(cache: Path) -> dict[str, int]:
    """What a re-run must restore: every stored row (the baseline comes from its cache once
    there)."""
    stored = _stored_by_label(cache)
    if any((cache / "baselines").glob("*.json")):
        stored.pop(BASE_LABEL, None)
    return stored


def test_sigkill_at_random_questions_then_resume_equals_uninterrupted(
    run_setup: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """Three runs, each killed twice at random questions (the first trial inside the baseline), then
    resumed."""
    total = N_QUESTIONS * (1 + len(QUANTS))
    rng = random.Random(7)
    survived = 0
    for trial in range(3):
        cache = tmp_path / f"cache{trial}"
        first = rng.randrange(1, N_QUESTIONS) if trial == 0 else rng.randrange(1, total // 2)
        expected: dict[str, int] = {}
        for stop_at in (first, rng.randrange(first + 1, total - N_QUESTIONS // 2)):
            code, _, err = _run(run_setup, cache, stop_at)
            assert code == -signal.SIGKILL, f"the run ended (code {code}) before question {stop_at}"
            assert _restored(err) == expected
            expected = _expected_restores(cache)
            assert sum(expected.values()) > 0
        code, out, err = _run(run_setup, cache)
        assert code == ExitCode.OK, err
        assert _restored(err) == expected  # nothing that finished was scored again
        report = json.loads(out)
        assert report["complete"] and _without_timing(report) == _without_timing(reference)
        survived += 1
    assert survived == 3


def test_ctrl_c_keeps_finished_questions_and_resumes(
    run_setup: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """SIGINT mid-run: exit 130 with a partial JSON report; the store keeps what finished; a re-run
    completes it."""
    cache = tmp_path / "cache"
    code, out, err = _run(
        run_setup, cache, stop_at=N_QUESTIONS + N_QUESTIONS // 2, sig=signal.SIGINT
    )
    assert code == ExitCode.INTERRUPTED, err
    partial = json.loads(out)
    assert partial["complete"] is False and partial["baseline"] is not None
    assert "run the same command again to resume" in err
    expected = _expected_restores(cache)
    assert sum(expected.values()) >= N_QUESTIONS // 2
    code, out, err = _run(run_setup, cache)
    assert code == ExitCode.OK, err
    assert _restored(err) == expected
    assert _without_timing(json.loads(out)) == _without_timing(reference)


@pytest.mark.real_model
def test_sigkill_and_resume_on_gemma(tmp_path: Path) -> None:
    """Gemma 3 270M F16 against Q8_0 on 8 MMLU questions: killed inside the quant, resumed, same
    report."""
    models = default_cache_dir() / "models" / "gemma-3-270m"  # where ggflip finds the demo
    (tmp_path / "models.toml").write_text(
        "[llama]\nn_ctx = 1024\nn_batch = 1024\nn_threads = 2\n[sets.g]\n"
        f'baseline = {{ path = "{models / "gemma-3-270m-F16.gguf"}", label = "{BASE_LABEL}" }}\n'
        f'quants = [ {{ path = "{models / "gemma-3-270m-Q8_0.gguf"}", label = "Q8_0" }} ]\n'
    )
    code, out, err = _run(tmp_path, tmp_path / "ref")
    assert code == ExitCode.OK, err
    reference = json.loads(out)
    cache = tmp_path / "cache"
    code, _, _ = _run(tmp_path, cache, stop_at=8 + 4, n_questions=8)
    assert code == -signal.SIGKILL
    expected = _expected_restores(cache)
    assert expected.get("Q8_0", 0) >= 4
    code, out, err = _run(tmp_path, cache)
    assert code == ExitCode.OK, err
    assert _restored(err) == expected
    assert _without_timing(json.loads(out)) == _without_timing(reference)
