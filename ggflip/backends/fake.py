"""A deterministic fake backend: logits are a pure function of the tokens, for millisecond tests.

Each fake model is a `FakeModel`: a vocabulary, and a `noise` level. Its logits at a position
are a fixed pseudo-random vector seeded by a hash of the preceding tokens (shared by every
fake model of the same vocabulary), plus `noise` times a second vector seeded by the model's
`noise_seed`: noise 0 reproduces the baseline exactly, larger noise drifts further, like a
coarser quant. A `bias` map can push chosen tokens up to script exact answers in tests.

With `batch_noise` (0 by default; `GROUPING_NOISE` is a llama.cpp-like size), the logits also
depend on the grouping, as llama.cpp's do when other sequences share a decode and its sums run in
another order: each call adds `batch_noise` times a vector seeded by every request of the call
and the request's place in it. The same grouping gives the same logits bit for bit; another
grouping moves them a little (a logit standard deviation of `batch_noise · scale`), so the noise
floor of such a fake model is small but not zero. Without it a question scored alone gives what
its batch gave, which tests that recompute a run by hand rely on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import GenerateRequest, Generation, ModelProbe, ScoreRequest
from ggflip.backends.greedy import generate_by_logits
from ggflip.backends.numerics import LlamaSettingsFactory
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.errors import ModelFileError

GROUPING_NOISE = 0.002  # a logit sd of 0.006 at scale 3: a floor ~1/600 of noise=0.05's KL

FAKE_VOCAB: tuple[str, ...] = (
    "<bos>",
    "<eos>",
    "A",
    "B",
    "C",
    "D",
    "E",
    " A",
    " B",
    " C",
    " D",
    " E",
    ":",
    ".",
    "\n",
    " ",
) + tuple(f"w{i}" for i in range(240))


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class FakeModel:
    """The behaviour of one fake model file."""

    noise: float = 0.0
    noise_seed: int = 1
    vocab: tuple[str, ...] = FAKE_VOCAB
    scale: float = 3.0
    bias: Mapping[int, float] = field(default_factory=dict)
    chat_template: str | None = None
    batch_noise: float = 0.0


class FakeBackend:
    """Backend protocol over a FakeModel; tokenizes on whitespace and known pieces."""

    def __init__(self, model: FakeModel, n_ctx: int = 4096) -> None:
        self._model = model
        self._n_ctx = n_ctx
        self._index = {piece: i for i, piece in enumerate(model.vocab)}
        self.calls = 0

    @property
    def n_vocab(self) -> int:
        return len(self._model.vocab)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        """Exact pieces first (" A", "A", ":"), else one stable `w<i>` token per word; `special`
        reads a special piece's text (`<bos>`, any `<...>` piece) as that piece, wherever it is."""
        ids = [0] if add_bos else []
        controls = [p for p in self._model.vocab if len(p) > 2 and p[0] == "<" and p[-1] == ">"]
        if not special:
            return ids + self._plain(text, controls)
        pattern = (
            "(" + "|".join(re.escape(c) for c in sorted(controls, key=len, reverse=True)) + ")"
        )
        for part in re.split(pattern, text) if controls else [text]:
            ids += [self._index[part]] if part in controls else self._plain(part, controls)
        return ids

    def _plain(self, text: str, controls: list[str]) -> list[int]:
        if text in self._index and text not in controls:
            return [self._index[text]]
        n_words = len(self.vocab_words)
        return [
            self._index[word]
            if word in self._index and word not in controls
            else self._index[self.vocab_words[_seed(word) % n_words]]
            for word in text.split()
        ]

    def token_pieces(self, tokens: Sequence[int]) -> list[str]:
        return [self._model.vocab[token] for token in tokens]

    @property
    def vocab_words(self) -> list[str]:
        return [piece for piece in self._model.vocab if piece.startswith("w")]

    def logits(self, requests: Sequence[ScoreRequest]) -> list[NDArray[np.float32]]:
        self.calls += 1
        grouping = _seed("grouping", tuple(tuple(request.tokens) for request in requests))
        out = []
        for place, request in enumerate(requests):
            if len(request.tokens) > self._n_ctx:
                raise ValueError("request longer than n_ctx")
            rows = [
                self._logits_after(request.tokens[: p + 1])
                + self._grouping_noise(grouping, place, p)
                for p in request.positions
            ]
            out.append(np.stack(rows).astype(np.float32))
        return out

    SLICE_ROWS = 64  # the rows of one `logits_slices` slice, standing in for llama.cpp's n_batch

    def logits_slices(self, request: ScoreRequest) -> Iterator[NDArray[np.float32]]:
        """`logits([request])[0]` in slices of `SLICE_ROWS` rows."""
        rows = self.logits([request])[0]
        for start in range(0, rows.shape[0], self.SLICE_ROWS):
            yield rows[start : start + self.SLICE_ROWS]

    def _grouping_noise(self, grouping: int, place: int, position: int) -> NDArray[np.float64]:
        """What sharing this call with these other requests adds at one position: tiny, fixed."""
        if not self._model.batch_noise:
            return np.zeros(self.n_vocab)
        rng = np.random.default_rng(_seed("batch", grouping, place, position))
        return self._model.batch_noise * self._model.scale * rng.standard_normal(self.n_vocab)

    def _logits_after(self, prefix: Sequence[int]) -> NDArray[np.float64]:
        n = self.n_vocab
        base = (
            np.random.default_rng(_seed("ctx", tuple(prefix))).standard_normal(n)
            * self._model.scale
        )
        if self._model.noise:
            rng = np.random.default_rng(_seed("noise", self._model.noise_seed, tuple(prefix)))
            base = base + self._model.noise * rng.standard_normal(n) * self._model.scale
        for token, bias in self._model.bias.items():
            base[token] += bias
        return base

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Greedy continuations through one `logits` call per step; `<eos>` (id 1) ends one."""
        vocab = self._model.vocab
        return generate_by_logits(
            self.logits, requests, lambda token: vocab[token].encode(), lambda token: token == 1
        )

    def chat_template(self) -> str | None:
        return self._model.chat_template

    def special_token(self, which: str) -> str:
        return {"bos": self._model.vocab[0], "eos": self._model.vocab[1]}.get(which, "")

    def close(self) -> None:
        pass


class FakeBackendFactory(LlamaSettingsFactory):
    """Maps model paths to FakeModels; a path not in the map is a missing file."""

    display_name = "fake backend"
    SET_NOISE = 0.1  # the noise `for_set` gives the first quant; the i-th gets i times as much

    @classmethod
    def for_set(cls, model_set: ModelSet) -> FakeBackendFactory:
        """Fake models for a set's paths (`backend = "fake"` in models.toml): the baseline
        noiseless, the i-th quant (from 1) with noise i * SET_NOISE and its own noise seed."""
        models: dict[str | Path, FakeModel] = {model_set.baseline.path: FakeModel()}
        for i, quant in enumerate(model_set.quants, start=1):
            models[quant.path] = FakeModel(noise=i * cls.SET_NOISE, noise_seed=i)
        return cls(models)

    def __init__(self, models: Mapping[str | Path, FakeModel], n_ctx: int = 4096) -> None:
        self._models = {str(path): model for path, model in models.items()}
        self._n_ctx = n_ctx
        self.opened: list[str] = []

    def _model(self, spec: ModelSpec) -> FakeModel:
        if str(spec.path) not in self._models:
            raise ModelFileError(f"{spec.path}: model file not found")
        return self._models[str(spec.path)]

    def build_info(self) -> dict[str, str]:
        return {"backend": "fake"}

    def probe(self, spec: ModelSpec) -> ModelProbe:
        model = self._model(spec)
        fingerprint = hashlib.sha256("\n".join(model.vocab).encode()).hexdigest()[:16]
        identity = (
            f"fake:{spec.path}:{model.noise}:{model.noise_seed}:{sorted(model.bias.items())}"
            f":{model.batch_noise}"
        )
        template = model.chat_template
        digest = hashlib.sha256(template.encode()).hexdigest()[:16] if template else None
        return ModelProbe(
            len(model.vocab), fingerprint, "fake", identity, chat_template_digest=digest
        )

    def open(self, spec: ModelSpec) -> FakeBackend:
        self.opened.append(spec.label)
        return FakeBackend(self._model(spec), self._n_ctx)
