"""Write tiny, random but deterministic llama-architecture GGUF files for tests.

Contract: ``write_tiny_gguf(path)`` produces a file of about 200 KB (110 KB as F16)
that llama.cpp loads as a real ``llama`` model with a SentencePiece ("llama")
vocabulary, and runs in about a millisecond per prompt on one CPU thread. The same
``seed`` always gives byte-identical weights; ``weight_noise`` perturbs every
tensor of that model by a deterministic relative amount, which stands in for a
quantized variant of it (same vocabulary, slightly different logits).

The default vocabulary, ``DEFAULT_VOCAB``, is laid out like a Llama-2 one:
``<unk> <s> </s>``, the 256 byte-fallback tokens ``<0x00>``..``<0xFF>``, then
normal pieces. Every printable ASCII character is a piece of its own and every
multi-character piece comes with all its prefixes, so llama.cpp's bigram-merging
SPM tokenizer always reaches whole words such as ``▁Answer`` and any text at all
tokenizes (non-ASCII through the byte tokens). ``CHAT_VOCAB`` adds the control
tokens of the ChatML, Gemma and Llama-3 chat templates (``<|im_start|>``,
``<start_of_turn>``, ``<|start_header_id|>``...); any piece written ``<name>`` is a
CONTROL token, as in those models' GGUFs.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import gguf
import numpy as np

__all__ = [
    "CHAT_CONTROLS",
    "CHAT_VOCAB",
    "DEFAULT_VOCAB",
    "SPACE",
    "other_vocab",
    "write_tiny_gguf",
]

SPACE = "\u2581"
"""The SentencePiece word-boundary mark that stands for a space."""

_SPECIAL = ("<unk>", "<s>", "</s>")
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
_CONTROL_PIECE = re.compile(r"<[^<>\s]{2,}>")
_WORDS = ("Question", "Answer", "What", "Which", "is", "the", "of", "and", "to", "in")
_CONTEXT_LENGTH = 256
_RMS_EPS = 1e-5
_ROPE_FREQ_BASE = 10000.0
_TARGET_LOGIT_STD = 3.0


def _with_prefixes(word: str) -> list[str]:
    """All prefixes of ``word`` of two characters or more, shortest first."""
    return [word[:end] for end in range(2, len(word) + 1)]


def _unique(pieces: Iterable[str]) -> tuple[str, ...]:
    """``pieces`` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(pieces))


def _default_vocab() -> tuple[str, ...]:
    """Build the Llama-2-shaped default vocabulary (468 pieces)."""
    byte_pieces = [f"<0x{value:02X}>" for value in range(256)]
    printable = [chr(code) for code in range(33, 127)]
    spaced_chars = [
        SPACE + char for char in string.ascii_uppercase + string.ascii_lowercase + string.digits
    ]
    words: list[str] = []
    for word in _WORDS:
        words += _with_prefixes(SPACE + word)
        words += _with_prefixes(word)
    return _unique([*_SPECIAL, *byte_pieces, SPACE, *printable, *spaced_chars, *words])


DEFAULT_VOCAB: tuple[str, ...] = _default_vocab()
"""Default vocabulary: specials, 256 byte tokens, ASCII characters, ``▁X`` and word pieces."""

CHAT_CONTROLS: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
"""The control tokens of the ChatML, Gemma and Llama-3 chat templates."""

CHAT_VOCAB: tuple[str, ...] = (*DEFAULT_VOCAB, *CHAT_CONTROLS)
"""The default vocabulary with the chat templates' control tokens at the end."""


def other_vocab(vocab: Sequence[str] = DEFAULT_VOCAB, shift: int = 1) -> tuple[str, ...]:
    """Return a vocabulary of the same size and pieces whose normal pieces sit at other ids.

    The normal (non-special, non-byte) pieces are rotated by ``shift`` places, so
    every such id names a different piece than in ``vocab`` while tokenization of
    text stays just as sensible. Use it to test vocabulary-mismatch guards.

    Args:
        vocab: The vocabulary to derive from.
        shift: How many places to rotate the normal pieces by (not a multiple of their count).

    Returns:
        The rotated vocabulary.
    """
    fixed = [piece for piece in vocab if _token_type(piece) != gguf.TokenType.NORMAL]
    normal = [piece for piece in vocab if _token_type(piece) == gguf.TokenType.NORMAL]
    if not normal or shift % len(normal) == 0:
        raise ValueError("shift must move the normal pieces to other ids")
    shift %= len(normal)
    return (*fixed, *normal[shift:], *normal[:shift])


def _token_type(piece: str) -> gguf.TokenType:
    """Classify a vocabulary piece the way a Llama-2 SentencePiece model does."""
    if piece == "<unk>":
        return gguf.TokenType.UNKNOWN
    if piece in _SPECIAL:
        return gguf.TokenType.CONTROL
    if _BYTE_PIECE.fullmatch(piece):
        return gguf.TokenType.BYTE
    if _CONTROL_PIECE.fullmatch(piece):
        return gguf.TokenType.CONTROL
    return gguf.TokenType.NORMAL


def _token_scores(vocab: Sequence[str]) -> list[float]:
    """SentencePiece-style scores: 0 for special and byte pieces, ``-rank`` for the rest."""
    scores: list[float] = []
    rank = 0
    for piece in vocab:
        if _token_type(piece) == gguf.TokenType.NORMAL:
            scores.append(-float(rank))
            rank += 1
        else:
            scores.append(0.0)
    return scores


def _check_vocab(vocab: Sequence[str]) -> None:
    """Refuse vocabularies llama.cpp's SPM loader could not use."""
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocabulary pieces must be unique")
    missing = [piece for piece in _SPECIAL if piece not in vocab]
    if missing:
        raise ValueError(f"vocabulary lacks the special pieces {missing}")


def _layer_shapes(n_embd: int, n_head_kv_dim: int, n_ff: int) -> dict[str, tuple[int, ...]]:
    """Numpy shapes ``(out, in)`` of one block's tensors; GGUF stores them reversed."""
    return {
        "attn_norm": (n_embd,),
        "attn_q": (n_embd, n_embd),
        "attn_k": (n_head_kv_dim, n_embd),
        "attn_v": (n_head_kv_dim, n_embd),
        "attn_output": (n_embd, n_embd),
        "ffn_norm": (n_embd,),
        "ffn_gate": (n_ff, n_embd),
        "ffn_up": (n_ff, n_embd),
        "ffn_down": (n_embd, n_ff),
    }


def _random_weights(
    rng: np.random.Generator, n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int
) -> dict[str, np.ndarray]:
    """Draw every tensor of the model, in a fixed order, keyed by its GGUF name.

    Matrices are scaled by ``1/sqrt(fan_in)`` so activations stay O(1); the
    output matrix is scaled so the logits have a standard deviation near 3,
    which gives next-token distributions that are spread out but far from uniform.
    """
    n_ff = 2 * n_embd
    n_head_kv_dim = n_embd // n_head * n_head_kv
    weights: dict[str, np.ndarray] = {
        "token_embd.weight": rng.standard_normal((n_vocab, n_embd)),
        "output_norm.weight": 1.0 + 0.1 * rng.standard_normal(n_embd),
        "output.weight": rng.standard_normal((n_vocab, n_embd))
        * (_TARGET_LOGIT_STD / np.sqrt(n_embd)),
    }
    for block in range(n_layer):
        for name, shape in _layer_shapes(n_embd, n_head_kv_dim, n_ff).items():
            if len(shape) == 1:
                tensor = 1.0 + 0.1 * rng.standard_normal(shape)
            else:
                tensor = rng.standard_normal(shape) / np.sqrt(shape[1])
            weights[f"blk.{block}.{name}.weight"] = tensor
    return {name: tensor.astype(np.float32) for name, tensor in weights.items()}


def _noise_rng(seed: int, weight_noise: float) -> np.random.Generator:
    """A generator that depends on the exact bits of ``seed`` and ``weight_noise``."""
    noise_bits = int(np.array(weight_noise, dtype=np.float64).view(np.uint64))
    return np.random.default_rng(np.random.SeedSequence([seed, 0x6E6F697365, noise_bits]))


def _add_noise(
    weights: dict[str, np.ndarray], seed: int, weight_noise: float
) -> dict[str, np.ndarray]:
    """Add gaussian noise of ``weight_noise`` times each tensor's RMS to every tensor."""
    rng = _noise_rng(seed, weight_noise)
    noisy: dict[str, np.ndarray] = {}
    for name, tensor in weights.items():
        rms = float(np.sqrt(np.mean(np.square(tensor, dtype=np.float64))))
        noise = rng.standard_normal(tensor.shape) * (weight_noise * rms)
        noisy[name] = (tensor + noise).astype(np.float32)
    return noisy


def _add_metadata(
    writer: gguf.GGUFWriter,
    vocab: Sequence[str],
    *,
    n_embd: int,
    n_layer: int,
    n_head: int,
    n_head_kv: int,
    file_type: gguf.LlamaFileType,
    add_space_prefix: bool,
) -> None:
    """Write the hyperparameters and the SentencePiece tokenizer keys."""
    writer.add_name("ggflip tiny test model")
    writer.add_context_length(_CONTEXT_LENGTH)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(2 * n_embd)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_rope_freq_base(_ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_vocab_size(len(vocab))
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(list(vocab))
    writer.add_token_scores(_token_scores(vocab))
    writer.add_token_types([_token_type(piece) for piece in vocab])
    writer.add_unk_token_id(vocab.index("<unk>"))
    writer.add_bos_token_id(vocab.index("<s>"))
    writer.add_eos_token_id(vocab.index("</s>"))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(add_space_prefix)


def write_tiny_gguf(
    path: Path,
    *,
    seed: int = 0,
    weight_noise: float = 0.0,
    vocab: Sequence[str] | None = None,
    n_embd: int = 32,
    n_layer: int = 2,
    arch: str = "llama",
    truncate_to: int | None = None,
    dtype: Literal["f32", "f16"] = "f32",
    add_space_prefix: bool = False,
    chat_template: str | None = None,
) -> Path:
    """Write a tiny random llama-layout GGUF model that llama.cpp can load and run.

    Args:
        path: Where to write the file (parents must exist).
        seed: Seed of the base weights; equal seeds give equal weights.
        weight_noise: Relative scale of gaussian noise added to every tensor (0 for
            none); the noise is seeded from ``seed`` and ``weight_noise`` together.
        vocab: Vocabulary pieces, by token id; ``DEFAULT_VOCAB`` when ``None``. It
            must contain ``<unk>``, ``<s>`` and ``</s>``; pieces named ``<0xHH>``
            become byte-fallback tokens.
        n_embd: Embedding width; a multiple of 8, as four query heads (two KV heads)
            of size n_embd/4 need an even rotary dimension.
        n_layer: Number of transformer blocks.
        arch: Value of ``general.architecture`` and of the hyperparameter key
            prefix. Tensors always follow the ``llama`` layout, so any other value
            yields a file llama.cpp refuses (for tests of load failures).
        truncate_to: If given, cut the finished file to this many bytes.
        dtype: Storage type of the matrices; norm vectors stay F32 as llama.cpp wants.
        chat_template: A ``tokenizer.chat_template`` to store (none when ``None``).
        add_space_prefix: Value of ``tokenizer.ggml.add_space_prefix``. ``False``
            (as in Gemma's GGUFs) makes ``" A"`` tokenize to ``▁A`` and ``"A"`` to ``A``.

    Returns:
        ``path``.

    Raises:
        ValueError: If the vocabulary or the dimensions are unusable.
    """
    vocab = DEFAULT_VOCAB if vocab is None else tuple(vocab)
    _check_vocab(vocab)
    n_head, n_head_kv = 4, 2
    if n_embd <= 0 or n_embd % (2 * n_head) or n_layer <= 0:
        raise ValueError(f"n_embd must be a positive multiple of {2 * n_head}, n_layer positive")
    weights = _random_weights(
        np.random.default_rng(seed), len(vocab), n_embd, n_layer, n_head, n_head_kv
    )
    if weight_noise:
        weights = _add_noise(weights, seed, weight_noise)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32

    path = Path(path)
    writer = gguf.GGUFWriter(path, arch)
    _add_metadata(
        writer,
        vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        file_type=file_type,
        add_space_prefix=add_space_prefix,
    )
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, tensor in weights.items():
        writer.add_tensor(
            name, tensor.astype(np.float16) if dtype == "f16" and tensor.ndim > 1 else tensor
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    if truncate_to is not None:
        os.truncate(path, truncate_to)
    return path
