"""Backends turn token sequences into next-token log-probabilities: the `Backend` protocol,
llama.cpp, a deterministic fake for tests, devices/RPC, and llama.cpp log routing.
"""
