"""Model lifecycle events that every mode's run yields (loading, loaded, baseline read from the
cache)."""

from __future__ import annotations

from dataclasses import dataclass

BASELINE = "baseline"


QUANT = "quant"


@dataclass(frozen=True)
class ModelLoading:
    """llama.cpp is loading a model (this can take a while for big files)."""

    label: str
    role: str
    path: str


@dataclass(frozen=True)
class ModelLoaded:
    """A model is loaded and about to score."""

    label: str
    role: str
    seconds: float


@dataclass(frozen=True)
class BaselineFromCache:
    """The baseline's scores were found in the cache; it is not loaded at all."""

    label: str
    cache_path: str
