"""A comparison set with its `hf://` references resolved to local files (downloaded once)."""

from __future__ import annotations

import dataclasses

from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.gguf.hf import resolve_hf


def resolve_model_set(model_set: ModelSet) -> ModelSet:
    """The set with every `hf://` model's path pointing at its cached local file.

    Raises:
        ModelFileError: as `resolve_hf`.
    """

    def resolved(spec: ModelSpec) -> ModelSpec:
        return dataclasses.replace(spec, path=resolve_hf(spec.ref)) if spec.ref else spec

    return dataclasses.replace(
        model_set,
        baseline=resolved(model_set.baseline),
        quants=tuple(resolved(q) for q in model_set.quants),
    )
