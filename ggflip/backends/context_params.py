"""llama.cpp's model and context parameters from `LlamaSettings`, as `LlamaBackend` opens a model
(and `context_memory` sizes it)."""

from __future__ import annotations

from typing import Any

from ggflip.config.models_toml import LlamaSettings
from ggflip.gguf.kv_cache_types import KV_CACHE_TYPES

__all__ = ["batch_sizes", "context_params", "llama_n_ctx", "set_mmap"]


def set_mmap(lib: Any, model_params: Any, use_mmap: bool) -> None:
    """Apply `use_mmap` to llama_model_params, whichever form this llama.cpp has.

    Older llama.cpp has a `use_mmap` flag; newer replaces it with `load_mode`, where AUTO
    (the default) maps the file and NONE reads it into memory.
    """
    fields = {name for name, *_ in type(model_params)._fields_}
    if "use_mmap" in fields:
        model_params.use_mmap = use_mmap
    elif "load_mode" in fields and not use_mmap:
        model_params.load_mode = lib.LLAMA_LOAD_MODE_NONE


def batch_sizes(settings: LlamaSettings) -> tuple[int, int]:
    """(n_batch, n_ubatch) as llama.cpp caps them: at n_ctx, and n_ubatch at n_batch."""
    n_batch = min(settings.n_batch, settings.n_ctx)
    return n_batch, min(settings.n_ubatch, n_batch)


def llama_n_ctx(settings: LlamaSettings) -> int:
    """The n_ctx llama.cpp is given: `settings.n_ctx` cells in one unified KV cache, else
    `n_seq_max` streams of `settings.n_ctx` cells each (llama.cpp gives each stream
    n_ctx / n_seq_max), so that `n_ctx` is the longest prompt either way."""
    return settings.n_ctx if settings.kv_unified else settings.n_ctx * settings.n_seq_max


def context_params(lib: Any, settings: LlamaSettings) -> Any:
    """llama_context_params for `settings` (the KV cache of `llama_n_ctx` cells, of the
    settings' types, unified or a stream per sequence)."""
    ctx_params = lib.llama_context_default_params()
    ctx_params.n_ctx = llama_n_ctx(settings)
    ctx_params.n_batch, ctx_params.n_ubatch = batch_sizes(settings)
    ctx_params.n_seq_max = settings.n_seq_max
    ctx_params.n_threads = settings.resolved_threads()
    ctx_params.n_threads_batch = settings.resolved_threads()
    ctx_params.kv_unified = settings.kv_unified
    ctx_params.flash_attn_type = (
        lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if settings.flash_attn
        else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    ctx_params.type_k = KV_CACHE_TYPES[settings.type_k]
    ctx_params.type_v = KV_CACHE_TYPES[settings.type_v]
    ctx_params.offload_kqv = settings.offload_kqv
    ctx_params.op_offload = settings.op_offload
    ctx_params.swa_full = settings.swa_full
    ctx_params.no_perf = True
    return ctx_params
