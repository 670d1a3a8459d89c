"""Which backend computes a comparison's logits: a name in models.toml to a `BackendFactory`.

The seam every front end goes through: `backend_factory(model_set)` reads the set's `backend`
(`backend = "fake"` at the top of models.toml or in a set's table; default "llama") and builds
that backend's factory for the set. The factory answers everything a mode needs to know about
how a model runs (`BackendFactory.baseline_numerics`, `numeric_settings`, `scoring_workers`),
so no mode reads llama settings.

A new backend (say, a llama.cpp server) is one module with a factory class implementing
`ggflip.backends.base.BackendFactory`, and one line in `BACKENDS`: its name and how to build its
factory for a set.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

from ggflip.backends.base import BackendFactory
from ggflip.backends.fake import FakeBackendFactory
from ggflip.backends.llama import LlamaBackendFactory
from ggflip.config.models_toml import ModelSet
from ggflip.errors import ConfigError

BACKENDS: Mapping[str, Callable[[ModelSet], BackendFactory]] = {
    "llama": lambda model_set: LlamaBackendFactory(),  # one llama.cpp build serves every set
    "fake": FakeBackendFactory.for_set,
}
"""Backend names (models.toml's `backend`) to the function that builds their factory for a set."""


def backend_factory(model_set: ModelSet) -> BackendFactory:
    """The factory of the backend `model_set` names.

    Raises:
        ConfigError: an unknown name, with where it was set and the closest known name.
    """
    name = model_set.backend
    if name not in BACKENDS:
        close = difflib.get_close_matches(name, list(BACKENDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        where = f"{model_set.backend_where}: " if model_set.backend_where else ""
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"{where}unknown backend {name!r}{hint} (backends: {known})")
    return BACKENDS[name](model_set)
