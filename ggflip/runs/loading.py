"""Loading a model for one pass of a run, between its lifecycle events.

Every mode's pass starts the same way: `ModelLoading`, the factory's `open`, `ModelLoaded` with
the seconds the load took. A consumer that stops the run at `ModelLoaded` (a cancel button) gets
the model closed; after that the pass owns the backend and closes it.
"""

from __future__ import annotations

import time
from collections.abc import Generator

from ggflip.backends.base import Backend, BackendFactory
from ggflip.config.models_toml import ModelSpec
from ggflip.runs.events import ModelLoaded, ModelLoading


def open_model(
    factory: BackendFactory, model: ModelSpec, role: str
) -> Generator[ModelLoading | ModelLoaded, None, Backend]:
    """Load `model` (as `factory.open` reads its settings), yielding its loading and loaded
    events; returns the backend, which the caller closes."""
    yield ModelLoading(model.label, role, str(model.path))
    started = time.perf_counter()
    backend = factory.open(model)
    try:
        yield ModelLoaded(model.label, role, time.perf_counter() - started)
    except BaseException:
        backend.close()
        raise
    return backend
