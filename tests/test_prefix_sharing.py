"""Shared prefixes in the llama.cpp backend: decoded once, copied per sequence, same logits as the
naive path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.llama import LlamaBackend
from ggflip.cli.main import main
from ggflip.config.models_toml import LlamaSettings

TASKS_DIR = Path(__file__).parent / "data" / "tasks"
# Sharing changes how tokens are grouped into llama_decode calls, and so the order of float
# sums inside the matmuls and the attention softmax; logits then agree to float32 rounding,
# not bit for bit.
TOLERANCE = 1e-4


def _requests(backend: LlamaBackend, shared: bool) -> list[ScoreRequest]:
    prefix = backend.tokenize(
        "Question: What is the answer of the question? Answer: the answer\n\n", add_bos=True
    )
    out = []
    for i, tail in enumerate(
        [
            "What is it?",
            "Which is the one of them",
            "to and in",
            "Question: is",
            "the of and to in is",
        ]
    ):
        tokens = tuple(prefix + backend.tokenize(tail, add_bos=False))
        positions = (len(tokens) - 1,) if i % 2 else tuple(range(len(prefix) - 1 + 1, len(tokens)))
        out.append(ScoreRequest(tokens, positions, len(prefix) if shared else 0))
    return out


@pytest.mark.parametrize("n_seq_max", [2, 4, 8])
def test_shared_prefix_logits_match_the_naive_and_one_at_a_time_paths(
    tiny_gguf_dir: Path, n_seq_max: int
) -> None:
    backend = LlamaBackend(
        tiny_gguf_dir / "base.gguf",
        LlamaSettings(n_ctx=256, n_batch=256, n_threads=1, n_seq_max=n_seq_max),
    )
    try:
        shared = backend.logits(_requests(backend, shared=True))
        again = backend.logits(
            _requests(backend, shared=True)
        )  # prefix kept in the KV cache from the last call
        naive = backend.logits(_requests(backend, shared=False))
        single = [backend.logits([r])[0] for r in _requests(backend, shared=False)]
    finally:
        backend.close()
    for a, b, c, d in zip(shared, again, naive, single):
        assert a.shape == c.shape
        assert np.max(np.abs(a - c)) < TOLERANCE
        assert np.max(np.abs(b - c)) < TOLERANCE
        assert np.max(np.abs(c - d)) < TOLERANCE
        assert np.array_equal(np.argmax(a, axis=-1), np.argmax(c, axis=-1))


def test_cli_answers_and_kl_match_with_and_without_prefix_reuse(
    tiny_gguf_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ggflip.backends import llama
    from ggflip.choice import requests as scoring_requests

    monkeypatch.setattr(
        scoring_requests, "MIN_SHARED_PREFIX", 1
    )  # the fixtures' contexts are short: share them anyway
    shared_calls: list[int] = []
    original = llama.LlamaBackend._decode_shared

    def counting(self, prefix, members, requests, results):  # type: ignore[no-untyped-def]
        shared_calls.append(len(members))
        return original(self, prefix, members, requests, results)

    monkeypatch.setattr(llama.LlamaBackend, "_decode_shared", counting)
    models = tmp_path / "models.toml"
    models.write_text(
        "[llama]\nn_ctx = 256\nn_batch = 256\nn_threads = 1\n\n[sets.tiny]\n"
        f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "F32" }}\n'
        f'quants = [ {{ path = "{tiny_gguf_dir / "noisier.gguf"}", label = "noisier" }} ]\n'
    )
    reports = []
    for task, data in (
        ("hellaswag", "hellaswag/validation.jsonl"),
        ("arc_easy", "arc_easy/test.jsonl"),
    ):
        pair = []
        for extra in ((), ("--no-prefix-reuse",)):
            code = main(
                [
                    "run",
                    "--models",
                    str(models),
                    "--task",
                    task,
                    "--data",
                    str(TASKS_DIR / data),
                    "--no-cache",
                    "--json",
                    *extra,
                ]
            )
            assert code == 0
            pair.append(json.loads(capsys.readouterr().out))
        reports.append(pair)
    assert (
        shared_calls and max(shared_calls) >= 2
    )  # the choices of a question did share their context
    for shared, naive in reports:
        rows_s, rows_n = shared["quants"][0]["rows"], naive["quants"][0]["rows"]
        assert [r["quant_choice"] for r in rows_s] == [r["quant_choice"] for r in rows_n]
        assert [r["base_choice"] for r in rows_s] == [r["base_choice"] for r in rows_n]
        assert np.allclose(
            [r["kl"] for r in rows_s], [r["kl"] for r in rows_n], rtol=1e-3, atol=1e-6
        )
        flat_s = [v for r in rows_s for v in r["base_sums"] + r["quant_sums"]]
        flat_n = [v for r in rows_n for v in r["base_sums"] + r["quant_sums"]]
        assert np.allclose(flat_s, flat_n, atol=1e-3)
