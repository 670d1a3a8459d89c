"""Prove that the generated tiny GGUF models load and run in llama.cpp as the tests assume."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from llama_cpp import llama_cpp

from tests.fixtures_gguf import build_tiny_gguf_dir, quiet_llama_logs
from tests.tiny_gguf import DEFAULT_VOCAB, SPACE, other_vocab, write_tiny_gguf

MCQ_PROMPT = "Question: What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"


@pytest.fixture(scope="module", autouse=True)
def _quiet_backend() -> Iterator[None]:
    """Initialise llama.cpp once and keep its native logs off the terminal."""
    llama_cpp.llama_backend_init()
    with quiet_llama_logs():
        yield


@pytest.fixture(scope="module")
def tiny_gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture directory of tests/fixtures_gguf.py, built here so no conftest is needed."""
    return build_tiny_gguf_dir(tmp_path_factory.mktemp("tiny_gguf"))


@contextmanager
def loaded_model(path: Path) -> Iterator[llama_cpp.llama_model_p]:
    """Load ``path`` on the CPU and free it afterwards."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model is not None, f"llama.cpp could not load {path}"
    try:
        yield model
    finally:
        llama_cpp.llama_model_free(model)


def tokenize(model: llama_cpp.llama_model_p, text: str, *, add_special: bool = False) -> list[int]:
    """Token ids of ``text``; ``add_special`` prepends BOS as the model asks."""
    vocab = llama_cpp.llama_model_get_vocab(model)
    data = text.encode("utf-8")
    tokens = (llama_cpp.llama_token * (len(data) + 2))()
    count = llama_cpp.llama_tokenize(
        vocab, data, len(data), tokens, len(tokens), add_special, False
    )
    assert count >= 0
    return list(tokens[:count])


def all_logits(model: llama_cpp.llama_model_p, tokens: Sequence[int]) -> np.ndarray:
    """Logits after every position of ``tokens``, shape ``(len(tokens), n_vocab)``, float32."""
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = 64
    # One thread: on a model this small, a worker pool's start-up costs up to ~0.3 s per decode.
    params.n_threads = params.n_threads_batch = 1
    context = llama_cpp.llama_init_from_model(model, params)
    assert context is not None
    batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
    try:
        for position, token in enumerate(tokens):
            batch.token[position] = token
            batch.pos[position] = position
            batch.n_seq_id[position] = 1
            batch.seq_id[position][0] = 0
            batch.logits[position] = True
        batch.n_tokens = len(tokens)
        assert llama_cpp.llama_decode(context, batch) == 0
        rows = [
            np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(context, position), shape=(n_vocab,)
            ).copy()
            for position in range(len(tokens))
        ]
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(context)
    return np.stack(rows)


def mcq_logits(path: Path) -> np.ndarray:
    """Logits of the model at ``path`` over the multiple-choice prompt, BOS included."""
    with loaded_model(path) as model:
        return all_logits(model, tokenize(model, MCQ_PROMPT, add_special=True))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def mean_kl(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over positions of KL(reference || other) of the next-token distributions."""
    reference_logprobs, other_logprobs = log_softmax(reference), log_softmax(other)
    return float(
        (np.exp(reference_logprobs) * (reference_logprobs - other_logprobs)).sum(axis=-1).mean()
    )


class TestWriter:
    def test_same_arguments_write_identical_bytes(self, tmp_path: Path) -> None:
        """Weights and noise are deterministic functions of seed and noise."""
        first = write_tiny_gguf(tmp_path / "a.gguf", weight_noise=0.05).read_bytes()
        second = write_tiny_gguf(tmp_path / "b.gguf", weight_noise=0.05).read_bytes()
        other_seed = write_tiny_gguf(tmp_path / "c.gguf", seed=1, weight_noise=0.05).read_bytes()
        assert first == second
        assert first != other_seed

    def test_default_vocab_has_the_pieces_benchmarks_need(self) -> None:
        """Letters with and without ▁, all byte tokens and the prompt words are single pieces."""
        needed = [SPACE + letter for letter in "ABCD"] + list("ABCD:.0123456789")
        needed += [f"<0x{value:02X}>" for value in range(256)] + [
            SPACE + "Answer",
            SPACE + "Question",
            "Answer",
        ]
        assert set(needed) <= set(DEFAULT_VOCAB)
        assert DEFAULT_VOCAB[:3] == ("<unk>", "<s>", "</s>")
        assert 300 <= len(DEFAULT_VOCAB) <= 512

    def test_other_vocab_has_same_size_and_other_pieces(self) -> None:
        """other_vocab keeps the size and the special/byte ids but moves every normal piece."""
        rotated = other_vocab()
        assert len(rotated) == len(DEFAULT_VOCAB)
        assert rotated[:259] == DEFAULT_VOCAB[:259]
        assert all(a != b for a, b in zip(rotated[259:], DEFAULT_VOCAB[259:]))

    def test_vocab_without_specials_is_refused(self, tmp_path: Path) -> None:
        """A vocabulary llama.cpp's SPM loader cannot use fails before anything is written."""
        with pytest.raises(ValueError, match="special"):
            write_tiny_gguf(tmp_path / "bad.gguf", vocab=["a", "b"])


class TestLoading:
    def test_loads_with_vocab_size_of_the_vocabulary(self, tiny_gguf_dir: Path) -> None:
        """Every well-formed variant loads and reports n_vocab == len(vocab)."""
        for name in ("base", "base_f16", "noisy", "noisier", "othervocab", "q8_0", "q4_0"):
            with loaded_model(tiny_gguf_dir / f"{name}.gguf") as model:
                assert llama_cpp.llama_vocab_n_tokens(
                    llama_cpp.llama_model_get_vocab(model)
                ) == len(DEFAULT_VOCAB)

    def test_truncated_file_is_refused(self, tiny_gguf_dir: Path, tmp_path: Path) -> None:
        """Cut in the tensor data or in the header, llama.cpp returns NULL and logs why."""
        cut_header = write_tiny_gguf(tmp_path / "header.gguf", truncate_to=16)
        for path, reason in (
            (tiny_gguf_dir / "truncated.gguf", "not within the file bounds"),
            (cut_header, "failed to read"),
        ):
            with quiet_llama_logs() as messages:
                model = llama_cpp.llama_model_load_from_file(
                    str(path).encode(), llama_cpp.llama_model_default_params()
                )
            assert model is None
            assert reason in "".join(text for _, text in messages)

    def test_unknown_architecture_is_refused(self, tmp_path: Path) -> None:
        """An architecture name llama.cpp does not know makes loading fail."""
        path = write_tiny_gguf(tmp_path / "arch.gguf", arch="notanarch")
        with quiet_llama_logs() as messages:
            model = llama_cpp.llama_model_load_from_file(
                str(path).encode(), llama_cpp.llama_model_default_params()
            )
        assert model is None
        assert "unknown model architecture" in "".join(text for _, text in messages)


class TestTokenizer:
    # With tokenizer.ggml.add_space_prefix = false (the default here, and the value in
    # Gemma 3's GGUF) llama.cpp's SPM tokenizer maps " A" to ▁A and "A" to A, so the
    # answer continuation " A" after "Answer:" is one token whether it is tokenized
    # alone or together with the prompt. With add_space_prefix = true a space is
    # prepended to the text first: "A" becomes ▁A but " A" becomes ▁ + ▁A.

    def test_space_letter_is_one_token(self, tiny_gguf_dir: Path) -> None:
        """' A' is the single token ▁A, 'A' is the single token A."""
        with loaded_model(tiny_gguf_dir / "base.gguf") as model:
            for letter in "ABCD":
                assert tokenize(model, " " + letter) == [DEFAULT_VOCAB.index(SPACE + letter)]
                assert tokenize(model, letter) == [DEFAULT_VOCAB.index(letter)]

    def test_continuation_tokenizes_the_same_alone_and_joined(self, tiny_gguf_dir: Path) -> None:
        """tokens(prompt + ' A') == tokens(prompt) + tokens(' A')."""
        with loaded_model(tiny_gguf_dir / "base.gguf") as model:
            prompt_tokens = tokenize(model, MCQ_PROMPT)
            assert tokenize(model, MCQ_PROMPT + " B") == prompt_tokens + tokenize(model, " B")
            assert [DEFAULT_VOCAB[token] for token in prompt_tokens[-2:]] == ["Answer", ":"]

    def test_prompt_uses_word_pieces_and_byte_newline(self, tiny_gguf_dir: Path) -> None:
        """Whole words are single pieces, a newline is <0x0A>, and BOS comes first."""
        with loaded_model(tiny_gguf_dir / "base.gguf") as model:
            pieces = [
                DEFAULT_VOCAB[token] for token in tokenize(model, MCQ_PROMPT, add_special=True)
            ]
        assert pieces[:5] == ["<s>", "Question", ":", SPACE + "What", SPACE + "is"]
        assert pieces.count("<0x0A>") == 5

    def test_any_text_tokenizes_without_unk(self, tiny_gguf_dir: Path) -> None:
        """Non-ASCII text falls back to byte tokens instead of <unk>."""
        with loaded_model(tiny_gguf_dir / "base.gguf") as model:
            tokens = tokenize(model, "héllo wörld ☃ {x} ~\t")
        assert tokens and DEFAULT_VOCAB.index("<unk>") not in tokens
        assert DEFAULT_VOCAB.index("<0xE2>") in tokens

    def test_space_prefix_variant(self, tmp_path: Path) -> None:
        """With add_space_prefix = true, 'A' gains the space mark and ' A' gains a lone ▁."""
        with loaded_model(
            write_tiny_gguf(tmp_path / "prefix.gguf", add_space_prefix=True)
        ) as model:
            assert tokenize(model, "A") == [DEFAULT_VOCAB.index(SPACE + "A")]
            assert tokenize(model, " A") == [
                DEFAULT_VOCAB.index(SPACE),
                DEFAULT_VOCAB.index(SPACE + "A"),
            ]

    def test_other_vocab_maps_letters_to_other_ids(self, tiny_gguf_dir: Path) -> None:
        """Same text, same size, different token ids: what a vocabulary guard must catch."""
        with loaded_model(tiny_gguf_dir / "othervocab.gguf") as model:
            assert tokenize(model, " A") != [DEFAULT_VOCAB.index(SPACE + "A")]


class TestLogits:
    def test_logits_are_finite_spread_and_deterministic(self, tiny_gguf_dir: Path) -> None:
        """Logits are finite, spread (std ~3), not one-hot, and identical across two loads."""
        first = mcq_logits(tiny_gguf_dir / "base.gguf")
        second = mcq_logits(tiny_gguf_dir / "base.gguf")
        assert first.shape == (len(first), len(DEFAULT_VOCAB))
        assert np.isfinite(first).all()
        assert 1.5 < float(first.std(axis=-1).mean()) < 6.0
        assert float(np.exp(log_softmax(first)).max(axis=-1).mean()) < 0.9
        np.testing.assert_array_equal(first, second)

    def test_weight_noise_gives_close_but_different_logits(
        self, tiny_gguf_dir: Path, tmp_path: Path
    ) -> None:
        """5% weight noise moves the logits a little; more noise moves them further."""
        base = mcq_logits(tiny_gguf_dir / "base.gguf")
        noisy = mcq_logits(write_tiny_gguf(tmp_path / "noise5.gguf", weight_noise=0.05))
        assert not np.array_equal(base, noisy)
        assert np.corrcoef(base.ravel(), noisy.ravel())[0, 1] > 0.95
        assert (base.argmax(axis=-1) == noisy.argmax(axis=-1)).mean() > 0.5
        kl_noisy = mean_kl(base, mcq_logits(tiny_gguf_dir / "noisy.gguf"))
        kl_noisier = mean_kl(base, mcq_logits(tiny_gguf_dir / "noisier.gguf"))
        assert 0.0 < kl_noisy < kl_noisier < 1.0

    def test_real_quantizations_stay_close_to_f16(self, tiny_gguf_dir: Path) -> None:
        """Q8_0 is closer to the F16 model than Q4_0 is, and both are close."""
        f16 = mcq_logits(tiny_gguf_dir / "base_f16.gguf")
        kl_q8 = mean_kl(f16, mcq_logits(tiny_gguf_dir / "q8_0.gguf"))
        kl_q4 = mean_kl(f16, mcq_logits(tiny_gguf_dir / "q4_0.gguf"))
        assert 0.0 < kl_q8 < kl_q4 < 1.0
