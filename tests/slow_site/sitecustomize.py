"""Loaded by the kill/resume tests' subprocesses (via PYTHONPATH): each llama.cpp call takes 5 ms
more.

Tiny models score a question in well under a millisecond, so an unslowed run can finish between
two polls of the run store and a signal meant for "question N" would arrive after the end.
"""

import time

import ggflip.backends.llama as _llama

_logits = _llama.LlamaBackend.logits


def _slow_logits(self, requests):  # type: ignore[no-untyped-def]
    time.sleep(0.005)
    return _logits(self, requests)


_llama.LlamaBackend.logits = _slow_logits  # type: ignore[method-assign]
