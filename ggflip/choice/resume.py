"""What identifies a run and a model in the run store, and how much of a run is already done.

`key_parts` is the baseline cache key (and the run store's run key); `model_key` names one
model's rows; `run_progress` tells a front end whether a run can be resumed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ggflip.backends.base import BackendFactory, ModelProbe
from ggflip.choice.cache import BaselineCache
from ggflip.choice.spec import RunSpec, groups_by_length, kv_layout
from ggflip.config.models_toml import ModelSpec
from ggflip.store.keys import cache_key


def computed_with(spec: RunSpec, factory: BackendFactory) -> dict[str, Any]:
    """How the baseline's numbers are computed: the settings and build that can change them
    (`BackendFactory.baseline_numerics`), the run's grouping of prompts into decodes, and the
    record kept."""
    grouping = {"grouped_by": "length"} if groups_by_length(spec) else {}
    return {
        **factory.baseline_numerics(spec.model_set.baseline),
        "batch_size": spec.batch_size,
        **grouping,
        "prefix_reuse": spec.share_prefixes,
        "tail_samples": spec.resolved_tail_samples,
    }


def key_parts(spec: RunSpec, base: ModelProbe, factory: BackendFactory) -> dict[str, object]:
    """What the baseline's numbers depend on: the baseline cache key and the run store's run key.

    Args:
        factory: the backend factory the run computes with.
    """
    prompt_set = spec.prompt_set
    return {
        "model": base.identity,
        "vocab": base.vocab_fingerprint,
        "prompt": prompt_set.version,
        "prompts": prompt_set.digest(),
        "questions": spec.questions.digest(),
        "top_k": min(spec.resolved_top_k, base.n_vocab),
        **computed_with(spec, factory),
    }


def model_key(model: ModelSpec, probe: ModelProbe, factory: BackendFactory) -> str:
    """A model's identity in the run store: label, file identity and the settings that can
    change its numbers (the build and the run's batching are in the run key)."""
    settings = factory.numeric_settings(model)
    blob = json.dumps([model.label, probe.identity, settings], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_progress(spec: RunSpec, factory: BackendFactory) -> dict[str, int]:
    """How many questions of each model (by label) a re-run of `spec` would not score again.

    Front ends call it to offer resuming: all zeros means nothing is stored. The baseline
    counts as done when its scores are in the baseline cache.

    Raises:
        ModelFileError: a model file is missing or unreadable (as `run_comparison` would).
    """
    spec = kv_layout(spec)
    models = spec.model_set.models
    probes = [factory.probe(model) for model in models]
    key = cache_key(key_parts(spec, probes[0], factory))
    done = {model.label: 0 for model in models}
    if spec.run_store is not None and spec.run_store.path.exists():
        with spec.run_store.open_for_reading() as session:
            for model, probe in zip(models, probes):
                done[model.label] = session.count(key, model_key(model, probe, factory))
    if spec.cache_dir is not None and BaselineCache(spec.cache_dir).contains(key):
        done[spec.model_set.baseline.label] = len(spec.questions.questions)
    return done
