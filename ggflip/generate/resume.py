"""How much of a generation run is already done, so that a front end can offer resuming it."""

from __future__ import annotations

from ggflip.backends.base import BackendFactory
from ggflip.generate.plan import key_parts, model_key
from ggflip.generate.records import GenerationCache
from ggflip.generate.spec import GenSpec, kv_layout
from ggflip.runs.resume import is_unfinished
from ggflip.store.keys import cache_key


def stored_turns(spec: GenSpec, factory: BackendFactory) -> tuple[dict[str, int], int]:
    """Turns per model (by label) that a re-run of `spec` would not generate again, and the
    number of turns, when an earlier run was left unfinished; ({}, 0) when nothing to offer.

    The baseline counts as done when its generations are in the baseline cache.

    Raises:
        ModelFileError: a model file is missing or unreadable (as `run_generation` would).
    """
    spec = kv_layout(spec)
    if spec.run_store is None:
        return {}, 0
    models = spec.model_set.models
    probes = [factory.probe(model) for model in models]
    key = cache_key(key_parts(spec, probes[0], factory))
    total = len(spec.units())
    done = {model.label: 0 for model in models}
    if spec.run_store.path.exists():
        with spec.run_store.open_for_reading() as session:
            for model, probe in zip(models, probes):
                done[model.label] = session.count(key, model_key(model, probe, factory))
    if spec.cache_dir is not None and GenerationCache(spec.cache_dir).contains(key):
        done[spec.model_set.baseline.label] = total
    if not is_unfinished(done, total, spec.model_set.baseline.label):
        return {}, 0
    return done, total
