"""Backends turn token sequences into next-token log-probabilities: the `Backend` and
`BackendFactory` protocols (base), llama.cpp, a deterministic fake for tests, devices/RPC, and
llama.cpp log routing.

The seam: front ends get a factory from `registry.backend_factory(model_set)`, which reads the
set's `backend` name from models.toml (default "llama"). Modes use only the `BackendFactory`
protocol; it also answers what keys a baseline (`baseline_numerics`, `numeric_settings`) and how
many scoring threads to run beside it (`scoring_workers`), so no mode reads llama settings. A new
backend is one module (its factory class) and one line in `registry.BACKENDS`.
"""
