"""Ask llama.cpp itself what one context of a model costs (`ggflip inspect --measure`).

Contract: `measure_context(path, ...)` loads the model as ggflip's backend does on this
machine's llama.cpp build (memory-mapped, no GPU layers unless asked), creates one context with
the given settings (no decode: creating it reserves the worst-case graph) and returns the sizes
llama.cpp logs: its KV caches (summed), its compute buffers (summed over devices) and its output
buffer, in bytes as llama.cpp prints them (MiB to two decimals). The compute buffer is the one
figure `ggflip.gguf.memory` cannot derive from the header; measuring it costs a model load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import BackendError, ModelFileError

_MIB = 1 << 20
_KV = re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB")
_BUFFER = re.compile(r"(compute|output) buffer size =\s*([\d.]+) MiB")


@dataclass(frozen=True)
class MeasuredContext:
    """What llama.cpp logged allocating for one context (bytes, to its 0.01 MiB)."""

    kv_bytes: int
    compute_bytes: int
    output_bytes: int


def _mib(values: list[float]) -> int:
    return round(sum(values) * _MIB)


def measure_context(
    path: Path,
    ctx: int,
    *,
    kv_type_k: str = "f16",
    kv_type_v: str = "f16",
    swa_full: bool = False,
    n_seq_max: int = 1,
    n_ubatch: int = 512,
    n_gpu_layers: int = 0,
) -> MeasuredContext:
    """Create one llama.cpp context for `path` and read what it allocates from llama.cpp's log.

    Flash attention is left to llama.cpp ("auto"), as llama-cli does.

    Raises:
        ModelFileError: llama.cpp cannot load the model.
        BackendError: llama.cpp refuses the context (its reason in the message).
    """
    import llama_cpp as lib

    from ggflip.backends.llama import _llama
    from ggflip.llama_log import capture_llama_lines

    _llama()
    model_params = lib.llama_model_default_params()
    model_params.n_gpu_layers = n_gpu_layers
    with capture_llama_lines() as lines:
        model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise ModelFileError(f"{path}: llama.cpp could not load this model: {lines[-1:]}")
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_seq_max, params.kv_unified = ctx, n_seq_max, True
        params.n_batch = params.n_ubatch = n_ubatch
        params.swa_full = swa_full
        params.type_k = getattr(lib, f"GGML_TYPE_{kv_type_k.upper()}")
        params.type_v = getattr(lib, f"GGML_TYPE_{kv_type_v.upper()}")
        start = len(lines)
        context = lib.llama_init_from_model(model, params)
        if context:
            lib.llama_free(context)
        lib.llama_model_free(model)
    created = lines[start:]
    if not context:
        reason = "; ".join(created[-2:]) or "no reason logged"
        raise BackendError(f"{path}: llama.cpp refused a context of {ctx} tokens: {reason}")
    buffers: dict[str, list[float]] = {"compute": [], "output": []}
    for line in created:
        if match := _BUFFER.search(line):
            buffers[match[1]].append(float(match[2]))
    return MeasuredContext(
        kv_bytes=_mib([float(m[1]) for line in created if (m := _KV.search(line))]),
        compute_bytes=_mib(buffers["compute"]),
        output_bytes=_mib(buffers["output"]),
    )
