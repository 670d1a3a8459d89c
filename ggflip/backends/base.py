"""The backend protocol the engine scores through, with the array shapes it promises.

A backend holds one loaded model. The engine asks it for raw next-token logits at chosen
positions of chosen token sequences and does every softmax and divergence itself, so the
llama.cpp backend and the fake backend are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
class ModelProbe:
    """What is known about a model file before loading it: enough to refuse a bad pairing early."""

    n_vocab: int
    vocab_fingerprint: str
    architecture: str
    identity: str
    bits_per_weight: float = float("nan")
    file_size: int = 0
    n_params: int = 0


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

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Token ids of `text`; `add_bos` prepends BOS when the model uses one."""
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
