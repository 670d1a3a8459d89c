"""What the baseline's and the quants' loops share: keys, the fixed batches, stored units.

The run key names everything the baseline's generations depend on (`key_parts`); a model's
key in the run store adds its label, file identity and llama settings (`model_key`). The
batches are fixed per round of turns (`batches`), so every model generates the same groups
of prompts in the same order and the baseline against itself gives the same texts.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import Backend, BackendFactory, ModelProbe, ScoreRequest
from ggflip.config.models_toml import ModelSpec
from ggflip.generate.records import GEN_CACHE_FORMAT
from ggflip.generate.spec import GenSpec
from ggflip.store.rowdb import StoreSession
from ggflip.tasks.generation import items_digest


def key_parts(spec: GenSpec, base: ModelProbe, factory: BackendFactory) -> dict[str, object]:
    """What the baseline's generations depend on: the cache key and the run store's run key.

    The settings and build come from `BackendFactory.baseline_numerics`, as in the other modes.
    """
    n_shots = len(spec.shots)
    return {
        "mode": "generate",
        "format": GEN_CACHE_FORMAT,
        "model": base.identity,
        "vocab": base.vocab_fingerprint,
        **factory.baseline_numerics(spec.model_set.baseline),
        "prompt": spec.task.prompt_version(n_shots, spec.chat),
        "items": items_digest(spec.items),
        "shots": items_digest(spec.shots),
        "system": spec.system,
        "stop": list(spec.task.stop),
        "max_new_tokens": spec.new_tokens,
        "batch_size": spec.batch_size,
        "top_k": min(spec.top_k, base.n_vocab),
        "tail_samples": spec.tail_samples,
    }


def model_key(model: ModelSpec, probe: ModelProbe, factory: BackendFactory) -> str:
    """A model's identity in the run store: label, file identity and the settings that can
    change its numbers."""
    settings = factory.numeric_settings(model)
    blob = json.dumps([model.label, probe.identity, settings], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class StoredUnits:
    """One model's stored units in one run (no-ops without a store session)."""

    def __init__(self, session: StoreSession | None, run: str, model: str, label: str) -> None:
        self.session, self.run, self.model, self.label = session, run, model, label

    def restore(self) -> dict[int, tuple[str, bytes]]:
        """Every stored unit of this model: index -> (kind, payload)."""
        return self.session.restore(self.run, self.model, self.label) if self.session else {}

    def record(self, items: dict[int, tuple[str, bytes]]) -> None:
        """Store these units in one transaction."""
        if self.session:
            self.session.record(self.run, self.model, self.label, items)

    def forget(self) -> None:
        """Drop every stored unit of this model in this run."""
        if self.session:
            self.session.forget(self.run, self.model)


def answer_rules(spec: GenSpec) -> tuple[str, ...]:
    """The task's answer rule first, then the rules reported beside it."""
    task = spec.task
    return ((task.answer_rule,) if task.answer_rule else ()) + task.other_rules


def has_gold(spec: GenSpec) -> bool:
    """Whether accuracy and flips mean anything: a rule and at least one gold answer."""
    return bool(answer_rules(spec)) and any(item.answer is not None for item in spec.items)


def batches(spec: GenSpec, units: list[tuple[int, int]], skips: dict[int, str]) -> list[list[int]]:
    """The fixed batches: per round, the units that are not skipped, cut in unit order."""
    cut: list[list[int]] = []
    for turn in range(spec.n_turns):
        live = [u for u, (_, t) in enumerate(units) if t == turn and u not in skips]
        cut += [live[i : i + spec.batch_size] for i in range(0, len(live), spec.batch_size)]
    return cut


def forced_logits(
    backend: Backend, prompt: tuple[int, ...], tokens: tuple[int, ...], shared: int
) -> NDArray[np.float32]:
    """Logits (len(tokens), n_vocab) at every generated position of prompt + tokens, one prefill."""
    positions = tuple(range(len(prompt) - 1, len(prompt) + len(tokens) - 1))
    return backend.logits([ScoreRequest(prompt + tokens, positions, shared)])[0]
