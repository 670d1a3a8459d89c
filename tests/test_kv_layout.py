"""Runs that share no prefix decode on a KV stream per sequence (`kv_unified` off): the same
log-probs as each prompt decoded alone, the layout in the baseline key and the memory estimate,
and runs that share prefixes keep the unified cache."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.llama import LlamaBackend, context_memory
from ggflip.backends.numerics import numeric_settings
from ggflip.choice.spec import RunSpec, kv_layout
from ggflip.config.models_toml import LlamaSettings, ModelSet, ModelSpec
from ggflip.gguf.header import read_header
from ggflip.gguf.memory import memory_or_reason
from ggflip.tasks.prompts import render_prompts
from ggflip.tasks.questions import QuestionSet
from ggflip.tasks.registry import get_task
from tests.memory_probe import _KV_LINE, llama_lines, write_tiny_gemma3_gguf

# The unified cache's own batching round-off: its rows of a four-prompt decode differ from each
# prompt decoded alone by up to 3.4e-5 (F32 weights) and 2.7e-3 (F16 weights) in log-prob on
# these requests (measured, one row in twelve); the per-sequence layout differs from the unified
# one by exactly that, because it reproduces the prompt decoded alone bit for bit.
UNIFIED_ROUND_OFF = {"base.gguf": 1e-4, "base_f16.gguf": 5e-3}


def _log_probs(path: Path, settings: LlamaSettings) -> list[np.ndarray]:
    """Float64 log-softmax of three rows of each of twelve random prompts (5-63 tokens: four fit
    one wave of a 256-cell unified cache, so both layouts decode the same groups)."""
    backend = LlamaBackend(path, settings)
    try:
        rng = random.Random(0)
        requests = []
        for _ in range(12):
            tokens = tuple(rng.randrange(3, backend.n_vocab) for _ in range(rng.randrange(5, 64)))
            requests.append(ScoreRequest(tokens, tuple(range(len(tokens) - 3, len(tokens)))))
        rows = backend.logits(requests)
    finally:
        backend.close()
    out = []
    for row in rows:
        x = row.astype(np.float64)
        shifted = x - x.max(axis=-1, keepdims=True)
        out.append(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))
    return out


@pytest.mark.parametrize("name", ["base.gguf", "base_f16.gguf"])
def test_per_sequence_streams_give_each_prompt_decoded_alone(
    tiny_gguf_dir: Path, name: str
) -> None:
    settings = LlamaSettings(n_ctx=256, n_batch=256, n_threads=1, n_seq_max=4)
    split = _log_probs(tiny_gguf_dir / name, dataclasses.replace(settings, kv_unified=False))
    alone = _log_probs(tiny_gguf_dir / name, dataclasses.replace(settings, n_seq_max=1))
    unified = _log_probs(tiny_gguf_dir / name, settings)
    for a, b, c in zip(split, alone, unified):
        assert np.array_equal(a, b)
        assert np.max(np.abs(a - c)) < UNIFIED_ROUND_OFF[name]


def test_each_stream_holds_n_ctx_tokens(tiny_gguf_dir: Path) -> None:
    settings = LlamaSettings(n_ctx=256, n_batch=256, n_threads=1, n_seq_max=4, kv_unified=False)
    backend = LlamaBackend(tiny_gguf_dir / "base.gguf", settings)
    try:
        assert backend.n_ctx == 256
        prompts = [ScoreRequest(tuple([5 + i] * 256), (255,)) for i in range(4)]
        assert len(backend.logits(prompts)) == 4  # 4 x 256 tokens: one wave, one stream each
    finally:
        backend.close()


def test_memory_estimate_counts_a_stream_per_sequence(tmp_path: Path) -> None:
    """The estimate of a split cache matches what llama.cpp allocates; a report's `memory` is
    still the one unified cache of n_ctx cells a user's own run needs."""
    path = write_tiny_gemma3_gguf(tmp_path / "g.gguf", n_embd=128, n_layer=7)
    settings = LlamaSettings(n_ctx=1000, n_threads=1, n_seq_max=3, kv_unified=False)
    with llama_lines() as lines:
        LlamaBackend(path, settings).close()
    logged = [(int(m[2]), int(m[5])) for line in lines if (m := _KV_LINE.search(line))]
    header = read_header(path)
    streams, reason = memory_or_reason(
        header, 3000, swa_full=True, n_seq_max=3, n_ubatch=512, kv_unified=False
    )
    assert reason is None and streams is not None
    # llama.cpp logs each cache's cells per stream and its stream count
    assert logged[0] == (streams["kv_cells"], 3)
    assert streams["kv_cells"] == 1024  # 1000 tokens padded to 256 cells, in each of 3 streams
    reported = context_memory(header, settings)["memory"]
    assert (reported["kv_unified"], reported["ctx"], reported["kv_cells"]) == (True, 1000, 1024)
    assert streams["kv_bytes"] == 3 * reported["kv_bytes"]  # swa_full: all full size


def _spec(task: str, shots: int, share: bool, batch_size: int = 4) -> RunSpec:
    from ggflip.tasks.questions import Question

    questions = QuestionSet(
        "t", tuple(Question(f"q{i}", "algebra", f"q {i}", ("a", "b"), 0) for i in range(3))
    )
    chosen = get_task(task)
    if shots == 0:
        prompts = render_prompts(chosen, questions.questions, lambda q: (), 0)
    else:
        prompts = render_prompts(chosen, questions.questions, lambda q: questions.questions, shots)
    models = ModelSet("s", ModelSpec("F16", Path("f.gguf")), (ModelSpec("Q", Path("q.gguf")),))
    return RunSpec(models, questions, prompts=prompts, share_prefixes=share, batch_size=batch_size)


def test_only_runs_that_share_no_prefix_drop_the_unified_cache() -> None:
    zero = kv_layout(_spec("mmlu", 0, True))
    assert [m.llama.kv_unified for m in zero.model_set.models] == [False, False]
    assert [m.llama.n_seq_max for m in zero.model_set.models] == [4, 4]  # a call's 4 prompts
    assert numeric_settings(zero.model_set.baseline.llama)["kv_unified"] is False
    assert "kv_unified" not in numeric_settings(LlamaSettings())  # older keys stay as they were
    assert kv_layout(_spec("mmlu", 0, False)).model_set.baseline.llama.kv_unified is False
    # one question per call: its noise floor groups four
    assert kv_layout(_spec("mmlu", 0, True, 1)).model_set.baseline.llama.n_seq_max == 4
    # cloze without sharing: a request per choice, 2 choices x 4 questions a call
    naive_cloze = kv_layout(_spec("hellaswag", 0, False)).model_set.baseline.llama
    assert (naive_cloze.kv_unified, naive_cloze.n_seq_max) == (False, 8)
    for shared in (_spec("mmlu", 2, True), _spec("hellaswag", 0, True)):
        assert kv_layout(shared) == shared
