"""Pytest fixtures that provide a directory of tiny generated GGUF models.

Load them into a test session from ``tests/conftest.py`` with
``pytest_plugins = ("tests.fixtures_gguf",)`` (or ``from tests.fixtures_gguf import *``).

``tiny_gguf_dir`` holds, all built from seed 0 with ``DEFAULT_VOCAB``:

- ``base.gguf``: F32 weights, the reference model;
- ``base_f16.gguf``: the same weights stored as F16 (logits within ~0.01 of base);
- ``noisy.gguf`` / ``noisier.gguf``: base plus 2% / 10% relative weight noise,
  stand-ins for a mild and a harsh quantization (noisier diverges more);
- ``q8_0.gguf`` / ``q4_0.gguf``: real llama.cpp quantizations of ``base_f16.gguf``
  (``q4_0`` keeps ``output.weight`` in Q8_0, as width 32 rules out Q6_K);
- ``othervocab.gguf``: base weights over ``other_vocab()``, same size, other pieces per id;
- ``truncated.gguf``: ``base.gguf`` cut to half its size, which llama.cpp refuses to load.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tiny_gguf import other_vocab, write_tiny_gguf

__all__ = ["build_tiny_gguf_dir", "quantize_gguf", "quiet_llama_logs", "tiny_gguf_dir"]


@contextmanager
def quiet_llama_logs() -> Iterator[list[tuple[int, str]]]:
    """Collect llama.cpp's native log lines instead of printing them, then restore the old logger.

    Yields:
        A list that fills with ``(ggml_log_level, text)`` pairs; ggml numbers the
        levels NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5.
    """
    from llama_cpp import llama_cpp

    messages: list[tuple[int, str]] = []

    def collect(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
        messages.append((level, (text or b"").decode("utf-8", errors="replace")))

    callback = llama_cpp.llama_log_callback(collect)  # must outlive its registration
    previous_callback = llama_cpp.llama_log_callback()
    previous_user_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(previous_callback), ctypes.byref(previous_user_data))
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield messages
    finally:
        llama_cpp.llama_log_set(previous_callback, previous_user_data)


def quantize_gguf(source: Path, target: Path, ftype: str) -> Path:
    """Quantize ``source`` into ``target`` with llama.cpp, e.g. ``ftype="Q8_0"``.

    Raises:
        RuntimeError: If llama.cpp reports a failure.
    """
    from llama_cpp import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    with quiet_llama_logs() as messages:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if status != 0:
        raise RuntimeError(
            f"quantizing {source} to {ftype} failed: {''.join(text for _, text in messages)}"
        )
    return target


def build_tiny_gguf_dir(directory: Path) -> Path:
    """Write the tiny GGUF models listed in the module docstring into ``directory``."""
    base = write_tiny_gguf(directory / "base.gguf")
    base_f16 = write_tiny_gguf(directory / "base_f16.gguf", dtype="f16")
    write_tiny_gguf(directory / "noisy.gguf", weight_noise=0.02)
    write_tiny_gguf(directory / "noisier.gguf", weight_noise=0.1)
    write_tiny_gguf(directory / "othervocab.gguf", vocab=other_vocab())
    write_tiny_gguf(directory / "truncated.gguf", truncate_to=base.stat().st_size // 2)
    quantize_gguf(base_f16, directory / "q8_0.gguf", "Q8_0")
    quantize_gguf(base_f16, directory / "q4_0.gguf", "Q4_0")
    return directory


@pytest.fixture(scope="session")
def tiny_gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of tiny GGUF models (see the module docstring for the list)."""
    return build_tiny_gguf_dir(tmp_path_factory.mktemp("tiny_gguf"))
