"""The thread budget: how many threads score a batch's logits while llama.cpp decodes the next.

`scoring_workers` sizes the pool to the cores llama.cpp is not using, and at least one: with the
model offloaded to a GPU llama.cpp leaves the CPU cores idle and all but one score; on a CPU run
with every core given to llama.cpp one scoring thread is a gain or a wash (Gemma 3 270M, 2 cores,
corpus mode: the decode's wait for scoring drops from ~7% of the run to 0.3%, and the decode
slows by about as much or less; the run was 5% faster in one comparison, 0.7% slower in another).
A backend factory answers it for its models (`BackendFactory.scoring_workers`).
"""

from __future__ import annotations

import os

from ggflip.config.models_toml import LlamaSettings

# A cap on the automatic count: each row holds the GIL only for its Python share (~20 µs of a
# ~0.4-1.1 ms row), so scoring scales far beyond a few threads; 2 cores scored 1.3-1.4x one.
MAX_WORKERS = 32


def scoring_workers(requested: int | None, settings: LlamaSettings) -> int:
    """Scoring threads for a model run with `settings`: `requested` when given (0: no overlap),
    else the cores llama.cpp does not use (all but one when layers are offloaded to a GPU), at
    least one."""
    if requested is not None:
        return max(0, requested)
    cores = os.cpu_count() or 1
    free = cores - 1 if settings.n_gpu_layers != 0 else cores - settings.resolved_threads()
    return max(1, min(free, MAX_WORKERS))
