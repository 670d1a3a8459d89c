"""The decode/scoring pipeline (`ggflip.runs.pipeline`): order, threads, bounded memory, errors,
and the same report with and without overlap in every mode on tiny GGUFs."""

from __future__ import annotations

import json
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ggflip.backends import threads
from ggflip.backends.threads import scoring_workers
from ggflip.cli.main import main
from ggflip.config.models_toml import LlamaSettings
from ggflip.runs.pipeline import overlapped

TASKS_DIR = Path(__file__).parent / "data" / "tasks"


class _Logits:
    """A batch's logits stand-in that counts how many are alive."""

    alive = 0
    most = 0

    def __init__(self, batch: int) -> None:
        self.batch = batch
        _Logits.alive += 1
        _Logits.most = max(_Logits.most, _Logits.alive)
        weakref.finalize(self, _Logits._gone)

    @staticmethod
    def _gone() -> None:
        _Logits.alive -= 1


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_in_order_decode_in_the_calling_thread(workers: int) -> None:
    caller = threading.get_ident()
    decoded_in: set[int] = set()
    scored_in: set[int] = set()

    def decode(batch: int) -> list[int]:
        decoded_in.add(threading.get_ident())
        return [batch * 10 + i for i in range(4)]

    def score(batch: int, logits: list[int], row_map: Any) -> list[int]:
        scored_in.add(threading.get_ident())
        time.sleep(0.002 * (batch % 3))  # later batches may finish first
        return row_map(lambda value: value * value, logits)

    got = list(overlapped(range(12), decode, score, workers))
    assert got == [(b, [(b * 10 + i) ** 2 for i in range(4)]) for b in range(12)]
    assert decoded_in == {caller}
    assert (scored_in == {caller}) == (workers == 0)


def test_at_most_two_batches_of_logits_are_alive() -> None:
    _Logits.alive = _Logits.most = 0

    def score(batch: int, logits: _Logits, row_map: Any) -> int:
        time.sleep(0.005)
        return logits.batch

    assert [r for _, r in overlapped(range(10), _Logits, score, 2)] == list(range(10))
    assert _Logits.most == 2  # one scored while the next decodes, never a third


def test_decode_overlaps_the_previous_batch_scoring() -> None:
    """While batch i is scored (50 ms), batch i + 1 decodes (50 ms): 6 batches take ~0.35 s, not
    0.6 s."""

    def decode(batch: int) -> int:
        time.sleep(0.05)
        return batch

    def score(batch: int, logits: int, row_map: Any) -> int:
        time.sleep(0.05)
        return logits

    started = time.perf_counter()
    assert [r for _, r in overlapped(range(6), decode, score, 1)] == list(range(6))
    overlapped_s = time.perf_counter() - started
    started = time.perf_counter()
    list(overlapped(range(6), decode, score, 0))
    serial_s = time.perf_counter() - started
    assert overlapped_s < 0.8 * serial_s


@pytest.mark.parametrize("where", ["decode", "score"])
def test_an_error_surfaces_at_its_batch(where: str) -> None:
    def decode(batch: int) -> int:
        if where == "decode" and batch == 3:
            raise ValueError("decode 3")
        return batch

    def score(batch: int, logits: int, row_map: Any) -> int:
        if where == "score" and batch == 3:
            raise ValueError("score 3")
        return batch

    seen = []
    with pytest.raises(ValueError, match=f"{where} 3"):
        for batch, _ in overlapped(range(6), decode, score, 2):
            seen.append(batch)
    assert seen == [0, 1, 2]


def test_workers_are_the_cores_llama_cpp_leaves_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    assert scoring_workers(None, LlamaSettings(n_threads=0)) == 1  # every core decodes: one
    assert scoring_workers(None, LlamaSettings(n_threads=12)) == 4
    assert scoring_workers(None, LlamaSettings(n_gpu_layers=99)) == 15  # all cores but one
    assert scoring_workers(3, LlamaSettings(n_threads=0)) == 3
    assert scoring_workers(0, LlamaSettings(n_gpu_layers=99)) == 0
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert scoring_workers(None, LlamaSettings(n_gpu_layers=99)) == 1
    assert scoring_workers(None, LlamaSettings(n_threads=1)) == 1


def _without_timings(value: Any) -> Any:
    """The report less what a clock or the machine decides (seconds, rates, memory)."""
    if isinstance(value, dict):
        return {
            key: _without_timings(item)
            for key, item in value.items()
            if not any(word in key for word in ("second", "time", "rss", "per_s", "elapsed"))
        }
    if isinstance(value, list):
        return [_without_timings(item) for item in value]
    return value


def _models(tmp_path: Path, tiny_gguf_dir: Path) -> Path:
    models = tmp_path / "models.toml"
    models.write_text(
        "[llama]\nn_ctx = 256\nn_batch = 256\nn_threads = 1\n\n[sets.tiny]\n"
        f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "F32" }}\n'
        "quants = [\n"
        f'  {{ path = "{tiny_gguf_dir / "noisy.gguf"}", label = "noisy" }},\n'
        f'  {{ path = "{tiny_gguf_dir / "q4_0.gguf"}", label = "Q4_0" }},\n'
        "]\n"
    )
    return models


def _both(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    reports = []
    for extra in (["--no-overlap"], ["--scoring-threads", "2"]):
        assert main([*args, *extra, "--no-cache", "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    return reports[0], reports[1]


def test_corpus_report_is_the_same_with_and_without_overlap(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"the cat {i % 7} sat on mat {i % 11} and" for i in range(300)))
    args = ["kld", "--models", str(_models(tmp_path, tiny_gguf_dir)), "--text", str(text)]
    serial, overlap = _both([*args, "--ctx", "128", "--chunks", "6", "--top-k", "8"], capsys)
    assert serial["n_chunks"] == 6
    noisy = serial["quants"][0]
    assert noisy["kl_mean"] > 0 and noisy["kl_tail_estimate"] > 0  # the tail draws are used
    assert _without_timings(serial) == _without_timings(overlap)


@pytest.mark.parametrize(
    ("task", "data", "extra"),
    [
        ("arc_easy", "arc_easy/test.jsonl", []),  # letter
        ("hellaswag", "hellaswag/validation.jsonl", ["--top-k", "8"]),  # cloze: rows per token
    ],
)
def test_choice_report_is_the_same_with_and_without_overlap(
    task: str,
    data: str,
    extra: list[str],
    tmp_path: Path,
    tiny_gguf_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = _models(tmp_path, tiny_gguf_dir)
    args = ["run", "--models", str(models), "--task", task, "--data", str(TASKS_DIR / data)]
    serial, overlap = _both([*args, "--batch-size", "1", *extra], capsys)
    rows = serial["quants"][0]["rows"]
    assert len(rows) >= 3 and any(row["kl"] > 0 for row in rows)
    assert _without_timings(serial) == _without_timings(overlap)


def test_generation_report_is_the_same_with_and_without_overlap(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _models(tmp_path, tiny_gguf_dir)
    args = ["run", "--models", str(models), "--task", "prompts", "--limit", "6"]
    serial, overlap = _both([*args, "--max-new-tokens", "12", "--batch-size", "3"], capsys)
    assert np.isfinite(serial["quants"][0]["kl_mean"])
    assert _without_timings(serial) == _without_timings(overlap)
