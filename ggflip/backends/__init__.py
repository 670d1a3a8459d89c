"""Backends turn token sequences into next-token logits: llama.cpp for real runs, a fake for tests."""
from __future__ import annotations

from ggflip.backends.base import Backend, BackendFactory, ModelProbe, ScoreRequest

__all__ = ["Backend", "BackendFactory", "ModelProbe", "ScoreRequest"]
