"""What llama.cpp itself allocates for a context, read from its own log (a second, independent
account of the KV cache that `ggflip.gguf.memory` computes), and tiny GGUFs of other layouts.

`allocation(model, ...)` creates one llama.cpp context on an already loaded model (no decode)
and parses the lines llama.cpp logs while doing it:

    llama_kv_cache_iswa: creating     SWA KV cache, size = 1024 cells
    llama_kv_cache: size =   15.00 MiB (  1024 cells,  15 layers,  1/1 seqs), K (f16): ...
    sched_reserve:        CPU compute buffer size =   514.50 MiB

`write_tiny_gemma3_gguf` writes a Gemma-3-layout model (sliding-window layers, GQA) small enough
for unit tests, with the tokenizer of `tests/tiny_gguf.py`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggflip.llama_log import capture_llama_lines

MIB = 1 << 20
_KV_LINE = re.compile(
    r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/(\d+) seqs\)"
)
_BUFFER = re.compile(r"(\S+)\s+(model|compute|output) buffer size =\s*([\d.]+) MiB")
_SWA_CELLS = re.compile(r"creating\s+(non-SWA|SWA) KV cache, size = (\d+) cells")


@dataclass(frozen=True)
class Allocation:
    """llama.cpp's own account of one context: each KV cache's MiB, cells and layers (in the
    order created: the full-attention cache first), its compute and output buffers in MiB."""

    kv_caches: tuple[tuple[float, int, int], ...]
    compute_mib: float
    output_mib: float
    lines: tuple[str, ...]

    @property
    def kv_bytes(self) -> float:
        return sum(mib for mib, _, _ in self.kv_caches) * MIB


def llama_lines() -> contextlib.AbstractContextManager[list[str]]:
    """Collect every line llama.cpp logs inside the block (through ggflip.llama_log)."""
    return capture_llama_lines(logging.DEBUG)


def load_model(path: Path) -> tuple[Any, float]:
    """(llama_model pointer, model buffer MiB as llama.cpp logs it) for a CPU-only load."""
    import llama_cpp as lib

    params = lib.llama_model_default_params()
    params.n_gpu_layers = 0
    with llama_lines() as lines:
        model = lib.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise RuntimeError(f"{path}: llama.cpp could not load it")
    mib = sum(float(m[3]) for line in lines if (m := _BUFFER.search(line)) and m[2] == "model")
    return model, mib


def allocation(
    model: Any,
    ctx: int,
    kv_type: str = "f16",
    *,
    flash_attn: bool = False,
    swa_full: bool = False,
    n_seq_max: int = 1,
    n_ubatch: int = 512,
    kv_unified: bool = True,
) -> Allocation:
    """Create (and free) one context on `model` and return what llama.cpp logged allocating."""
    import llama_cpp as lib

    params = lib.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = ctx, max(n_ubatch, 512), n_ubatch
    params.n_seq_max, params.kv_unified, params.swa_full = n_seq_max, kv_unified, swa_full
    params.type_k = params.type_v = getattr(lib, f"GGML_TYPE_{kv_type.upper()}")
    params.flash_attn_type = (
        lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    params.n_threads = params.n_threads_batch = 1
    with llama_lines() as lines:
        context = lib.llama_init_from_model(model, params)
    if not context:
        raise RuntimeError(f"llama.cpp refused the context: {lines[-3:]}")
    lib.llama_free(context)
    caches = tuple(
        (float(m[1]), int(m[2]), int(m[3])) for line in lines if (m := _KV_LINE.search(line))
    )
    buffers = {m[2]: float(m[3]) for line in lines if (m := _BUFFER.search(line))}
    return Allocation(caches, buffers.get("compute", 0.0), buffers.get("output", 0.0), tuple(lines))


def write_tiny_gemma3_gguf(
    path: Path, *, n_layer: int = 7, window: int = 128, n_embd: int = 64, seed: int = 0
) -> Path:
    """A random Gemma-3-layout GGUF: 4 query heads and 2 KV heads of `n_embd`/4, every sixth
    layer full attention and the others over a window of `window` tokens (llama.cpp's gemma3
    pattern), F16 matrices."""
    import gguf

    from tests.tiny_gguf import DEFAULT_VOCAB, _add_metadata

    n_head, n_head_kv, head = 4, 2, n_embd // 4
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, "gemma3")
    _add_metadata(
        writer,
        DEFAULT_VOCAB,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        file_type=gguf.LlamaFileType.MOSTLY_F16,
        add_space_prefix=False,
    )
    writer.add_key_length(head)
    writer.add_value_length(head)
    writer.add_sliding_window(window)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float16)

    def norm(width: int) -> np.ndarray:
        return np.ones(width, dtype=np.float32)

    writer.add_tensor("token_embd.weight", matrix(len(DEFAULT_VOCAB), n_embd))
    writer.add_tensor("output_norm.weight", norm(n_embd))
    for il in range(n_layer):
        block = {
            "attn_norm": norm(n_embd),
            "attn_q": matrix(n_head * head, n_embd),
            "attn_k": matrix(n_head_kv * head, n_embd),
            "attn_v": matrix(n_head_kv * head, n_embd),
            "attn_q_norm": norm(head),
            "attn_k_norm": norm(head),
            "attn_output": matrix(n_embd, n_head * head),
            "post_attention_norm": norm(n_embd),
            "ffn_norm": norm(n_embd),
            "ffn_gate": matrix(2 * n_embd, n_embd),
            "ffn_up": matrix(2 * n_embd, n_embd),
            "ffn_down": matrix(n_embd, 2 * n_embd),
            "post_ffw_norm": norm(n_embd),
        }
        for name, tensor in block.items():
            writer.add_tensor(f"blk.{il}.{name}.weight", tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
