"""Generation through llama.cpp on a tiny GGUF: batched greedy equals one prompt at a time,
and the chat template renders."""

from __future__ import annotations

from pathlib import Path

from ggflip.backends.base import GenerateRequest
from ggflip.backends.greedy import generate_by_logits
from ggflip.backends.llama import LlamaBackend
from ggflip.config.models_toml import LlamaSettings
from ggflip.generate.spec import render_chat
from tests.tiny_gguf import write_tiny_gguf

# Two logits this close are a tie another batching may break the other way (float rounding).
TIE = 1e-4
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
PROMPTS = ["Question: What is the", "Answer: the of and", "What is in", "Which is the of", "is"]


def _agree_but_ties(batched: tuple[int, ...], single: tuple[int, ...], margins: tuple[float, ...]):  # type: ignore[no-untyped-def]
    """(equal, tie steps): equal up to the first step whose top two logits tie."""
    for step, (a, b) in enumerate(zip(batched, single)):
        if a != b:
            return margins[step] < TIE, 1
    return len(batched) == len(single), 0


def test_batched_greedy_equals_one_at_a_time(tmp_path: Path) -> None:
    """Batched, shared-prefix, one-at-a-time and the no-cache reference loop all agree."""
    path = write_tiny_gguf(tmp_path / "m.gguf")
    backend = LlamaBackend(path, LlamaSettings(n_ctx=256, n_seq_max=4, n_threads=1))
    try:
        requests = [
            GenerateRequest(tuple(backend.tokenize(t, add_bos=True)), 24, ()) for t in PROMPTS
        ]
        batched = backend.generate(requests)  # 5 prompts, 4 sequences: two waves
        single = [backend.generate([r])[0] for r in requests]
        reference = generate_by_logits(
            backend.logits, requests, backend._piece_bytes, backend._is_end
        )
        shared = backend.generate([GenerateRequest(r.tokens, 24, (), 1) for r in requests])
        ties = 0
        for b, s, r, h in zip(batched, single, reference, shared):
            for other in (s, r, h):
                equal, tie = _agree_but_ties(b.tokens, other.tokens, b.margins)
                assert equal
                ties += tie
            assert b.finish == "length" and len(b.tokens) == 24
        assert ties <= 2  # counted, never more than a rare float tie
    finally:
        backend.close()


def test_stop_string_cuts_the_text(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf")
    backend = LlamaBackend(path, LlamaSettings(n_ctx=256, n_seq_max=2, n_threads=1))
    try:
        request = GenerateRequest(tuple(backend.tokenize("What is", add_bos=True)), 30, ())
        free = backend.generate([request])[0]
        stop = free.text[5:8]
        cut = backend.generate([GenerateRequest(request.tokens, 30, (stop,))])[0]
        assert cut.finish == "stop" and cut.text == free.text[: free.text.index(stop)]
        assert cut.tokens == free.tokens[: len(cut.tokens)]
    finally:
        backend.close()


def test_chat_template_renders_from_the_gguf(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "chat.gguf", chat_template=TEMPLATE)
    plain = write_tiny_gguf(tmp_path / "plain.gguf")
    backend = LlamaBackend(path, LlamaSettings(n_ctx=256, n_threads=1))
    without = LlamaBackend(plain, LlamaSettings(n_ctx=256, n_threads=1))
    try:
        assert without.chat_template() is None
        template = backend.chat_template()
        assert template == TEMPLATE
        text = render_chat(
            template,
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            backend.special_token("bos"),
            backend.special_token("eos"),
            str(path),
        )
        assert text == "<s><system>Be brief.\n<user>Hi\n<assistant>"
    finally:
        backend.close()
        without.close()


def test_per_sequence_streams_generate_each_prompt_as_if_alone(tmp_path: Path) -> None:
    """On a KV stream per sequence (`kv_unified` off, as runs without shared shots generate),
    batched generation is each prompt generated alone: the same tokens, and margins that differ
    by the float rounding of another grouping of the prefill's matmuls (measured up to 2.2e-4,
    and 2.3e-4 between the unified cache's batched generation and the same prompts alone)."""
    import dataclasses

    path = write_tiny_gguf(tmp_path / "m.gguf")
    settings = LlamaSettings(n_ctx=64, n_seq_max=4, n_threads=1, kv_unified=False)
    streams = LlamaBackend(path, settings)
    alone = LlamaBackend(path, dataclasses.replace(settings, n_seq_max=1, kv_unified=True))
    try:
        requests = [
            GenerateRequest(tuple(streams.tokenize(t, add_bos=True)), 24, ()) for t in PROMPTS
        ]
        batched = streams.generate(requests)  # 5 prompts, 4 streams: two waves
        for generation, request in zip(batched, requests):
            single = alone.generate([request])[0]
            assert generation.tokens == single.tokens
            assert max(abs(a - b) for a, b in zip(generation.margins, single.margins)) < 5e-4
            assert len(generation.tokens) == 24
    finally:
        streams.close()
        alone.close()
