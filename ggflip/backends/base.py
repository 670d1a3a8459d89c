"""The backend protocol the engine scores through, with the array shapes it promises.

A backend holds one loaded model. The engine asks it for raw next-token logits at chosen
positions of chosen token sequences and does every softmax and divergence itself, so the
llama.cpp backend and the fake backend are interchangeable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ggflip.config.models_toml import ModelSpec


@dataclass(frozen=True)
class ScoreRequest:
    """One token sequence and the positions whose next-token logits are wanted.

    `tokens` is the whole sequence, BOS included when the model wants one. A position `i`
    asks for the distribution of token `i + 1` given `tokens[: i + 1]`.

    `shared_prefix` is a hint: the first `shared_prefix` tokens (never past the first scored
    position) are a prefix other requests may share, e.g. a few-shot prefix or a cloze
    context; a backend may decode such a prefix once and reuse it. 0: no hint.
    """

    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    shared_prefix: int = 0


@dataclass(frozen=True)
class GenerateRequest:
    """One prompt to continue greedily.

    `tokens` is the prompt, BOS included when the model wants one. Generation stops at the
    model's end-of-generation tokens, once the decoded text holds one of `stop`, or after
    `max_new_tokens` tokens. `shared_prefix` is the same hint as `ScoreRequest`'s: requests of
    one call that name the same prefix may share its decode.
    """

    tokens: tuple[int, ...]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    shared_prefix: int = 0


@dataclass(frozen=True)
class Generation:
    """A greedy continuation.

    Attributes:
        tokens: the generated ids, the one that ended it included (an EOS, the last token of
            a stop string).
        text: their text, cut before the first stop string; end-of-generation tokens add none.
        finish: "eos", "stop" or "length" (`max_new_tokens` reached: truncated).
        margins: per generated token, the top-1 minus the top-2 logit of the step that chose
            it; a margin within float rounding of 0 is a tie another batching may break the
            other way.
    """

    tokens: tuple[int, ...]
    text: str
    finish: str
    margins: tuple[float, ...]


@dataclass(frozen=True)
class ModelProbe:
    """What is known about a model file before loading it: enough to refuse a bad pairing early."""

    n_vocab: int
    vocab_fingerprint: str
    architecture: str
    identity: str
    bits_per_weight: float = float("nan")
    file_size: int = 0
    n_params: int = 0
    chat_template_digest: str | None = None  # a digest of tokenizer.chat_template, None if none
    # `ggflip.gguf.memory.Memory.to_json()` at the context the backend opens the model with, in
    # one unified KV cache as a user runs it (whatever layout the run itself decodes on), or
    # None and the reason it is not known.
    memory: dict[str, Any] | None = None
    memory_unknown: str | None = "this backend does not size models"

    def memory_facts(self) -> dict[str, Any]:
        """The `memory` and `memory_unknown` keys every report's model entry carries."""
        return {"memory": self.memory, "memory_unknown": self.memory_unknown}

    context_length: int | None = None  # the trained context (`<arch>.context_length`), if known
    imatrix: dict[str, Any] = field(default_factory=dict)  # `gguf.header.imatrix_provenance`


class Backend(Protocol):
    """A loaded model that scores token sequences."""

    @property
    def n_vocab(self) -> int:
        """Vocabulary size: the length of every logits row."""
        ...

    @property
    def n_ctx(self) -> int:
        """The longest sequence one request may hold."""
        ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        """Token ids of `text`; `add_bos` prepends BOS when the model uses one.

        `special` parses the text of special tokens (`<start_of_turn>`, `<|im_start|>`, `<s>`)
        into their single ids, as llama.cpp does with a rendered chat template; without it such
        text is plain characters, as llama-perplexity reads a corpus.
        """
        ...

    def token_pieces(self, tokens: Sequence[int]) -> list[str]:
        """The text of each token on its own (invalid UTF-8 bytes replaced), for per-token views."""
        ...

    def logits(self, requests: Sequence[ScoreRequest]) -> list[NDArray[np.float32]]:
        """Raw next-token logits for each request.

        Returns:
            One float32 array per request, shape (len(request.positions), n_vocab),
            row j holding the logits after `request.tokens[: positions[j] + 1]`.
        """
        ...

    def logits_slices(self, request: ScoreRequest) -> Iterator[NDArray[np.float32]]:
        """The logits of one long request, a slice at a time: memory that does not grow with
        the request's length times the vocabulary.

        Yields:
            Consecutive float32 arrays of shape (rows, n_vocab) that, concatenated, equal
            `logits([request])[0]` (the same computation, so the same numbers); each holds at
            most one decode's rows (llama.cpp: one ubatch, at most n_ubatch). No other call may
            be made on the backend until the iterator is exhausted or closed.
        """
        ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Greedy continuations of several prompts, decoded together.

        Every step is one decode of the live sequences' last tokens (a finished sequence
        drops out); the same requests in the same order always give the same generations.

        Returns:
            One Generation per request, in order.
        """
        ...

    def chat_template(self) -> str | None:
        """The model's `tokenizer.chat_template` (Jinja), None when it has none."""
        ...

    def special_token(self, which: str) -> str:
        """The text of the model's "bos" or "eos" token ("" when it has none), for templates."""
        ...

    def close(self) -> None:
        """Free the model; the backend is unusable afterwards."""
        ...


class BackendFactory(Protocol):
    """Probes model files without loading them, and loads them into backends."""

    def build_info(self) -> dict[str, Any]:
        """What identifies the library computing the logits (version, compiled features,
        devices), JSON-serializable: part of every baseline cache key."""
        ...

    def probe(self, spec: ModelSpec) -> ModelProbe:
        """Read what the file says about itself (vocabulary, identity), cheaply.

        Raises:
            ModelFileError: missing, unreadable, not a model, or truncated.
        """
        ...

    def open(self, spec: ModelSpec) -> Backend:
        """Load the model with its llama settings.

        Raises:
            ModelFileError: the model fails to load.
        """
        ...

    def baseline_numerics(self, spec: ModelSpec) -> dict[str, Any]:
        """What a baseline computed by `open(spec)` depends on beyond its file and inputs (the
        settings that can change a logit, and `build_info()`), JSON-serializable: every mode's
        baseline cache key and report hold it (`ggflip.backends.numerics`)."""
        ...

    def numeric_settings(self, spec: ModelSpec) -> dict[str, Any]:
        """The settings of `spec` that can change its logits, JSON-serializable: part of a
        model's key in the run store."""
        ...

    def scoring_workers(self, requested: int | None, spec: ModelSpec) -> int:
        """Threads that score one batch while the next decodes: `requested` when given (0: no
        overlap), else what this backend leaves free while it runs `spec`
        (`ggflip.backends.threads`)."""
        ...

    def describe(self, spec: ModelSpec, role: str) -> str:
        """One line of how `spec` runs (its settings), for a setup view; `role` names the model's
        part ("baseline")."""
        ...
