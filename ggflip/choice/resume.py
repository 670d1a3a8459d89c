"""What identifies a run and a model in the run store, and how much of a run is already done.

`key_parts` is the baseline cache key (and the run store's run key); `model_key` names one
model's rows; `run_progress` tells a front end whether a run can be resumed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ggflip.backends.base import BackendFactory, ModelProbe
from ggflip.backends.numerics import baseline_numerics, numeric_settings
from ggflip.choice.cache import BaselineCache
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSpec
from ggflip.store.keys import cache_key


def computed_with(spec: RunSpec, build: Mapping[str, Any]) -> dict[str, Any]:
    """How the baseline's numbers are computed: the llama settings and build that can change
    them (`baseline_numerics`), the run's grouping of prompts into decodes, and the record kept."""
    return {
        **baseline_numerics(spec.model_set.baseline.llama, build),
        "batch_size": spec.batch_size,
        "prefix_reuse": spec.share_prefixes,
        "tail_samples": spec.resolved_tail_samples,
    }


def key_parts(spec: RunSpec, base: ModelProbe, build: Mapping[str, Any]) -> dict[str, object]:
    """What the baseline's numbers depend on: the baseline cache key and the run store's run key.

    Args:
        build: the backend factory's `build_info()`.
    """
    prompt_set = spec.prompt_set
    return {
        "model": base.identity,
        "vocab": base.vocab_fingerprint,
        "prompt": prompt_set.version,
        "prompts": prompt_set.digest(),
        "questions": spec.questions.digest(),
        "top_k": min(spec.resolved_top_k, base.n_vocab),
        **computed_with(spec, build),
    }


def model_key(model: ModelSpec, probe: ModelProbe) -> str:
    """A model's identity in the run store: label, file identity and the llama settings that can
    change its numbers (the build and the run's batching are in the run key)."""
    blob = json.dumps([model.label, probe.identity, numeric_settings(model.llama)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_progress(spec: RunSpec, factory: BackendFactory) -> dict[str, int]:
    """How many questions of each model (by label) a re-run of `spec` would not score again.

    Front ends call it to offer resuming: all zeros means nothing is stored. The baseline
    counts as done when its scores are in the baseline cache.

    Raises:
        ModelFileError: a model file is missing or unreadable (as `run_comparison` would).
    """
    models = spec.model_set.models
    probes = [factory.probe(model) for model in models]
    key = cache_key(key_parts(spec, probes[0], factory.build_info()))
    done = {model.label: 0 for model in models}
    if spec.run_store is not None and spec.run_store.path.exists():
        with spec.run_store.open_for_reading() as session:
            for model, probe in zip(models, probes):
                done[model.label] = session.count(key, model_key(model, probe))
    if spec.cache_dir is not None and BaselineCache(spec.cache_dir).contains(key):
        done[spec.model_set.baseline.label] = len(spec.questions.questions)
    return done


def is_unfinished(stored: Mapping[str, int], total: int, baseline: str) -> bool:
    """Whether `run_progress`'s counts show a run that was started and not finished, the one
    case worth asking about: some quant has stored questions (or the baseline some but not all)
    while some model still lacks questions. A complete comparison is just read back."""
    started = any(n for label, n in stored.items() if label != baseline) or (
        0 < stored[baseline] < total
    )
    return started and any(n < total for n in stored.values())
