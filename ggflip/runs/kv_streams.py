"""A model set moved onto a KV stream per sequence, for runs whose requests share no prefix;
the choice and generation modes decide when (`ggflip.choice.spec.kv_layout`,
`ggflip.generate.spec.kv_layout`)."""

from __future__ import annotations

import dataclasses

from ggflip.config.models_toml import ModelSet, ModelSpec


def with_kv_streams(model_set: ModelSet, streams: int) -> ModelSet:
    """`model_set` with every model on a KV stream per sequence (`kv_unified` off: each sequence
    attends over its own cells only), in at most `streams` streams of n_ctx cells each."""

    def per_sequence(model: ModelSpec) -> ModelSpec:
        n_seq_max = min(model.llama.n_seq_max, streams)
        settings = dataclasses.replace(model.llama, kv_unified=False, n_seq_max=n_seq_max)
        return dataclasses.replace(model, llama=settings)

    return dataclasses.replace(
        model_set,
        baseline=per_sequence(model_set.baseline),
        quants=tuple(per_sequence(q) for q in model_set.quants),
    )
