"""Load an importance matrix (llama-imatrix output) the way llama.cpp's `llama-quantize` does.

Two formats exist. The GGUF one (llama.cpp since mid 2025) holds, per weight tensor NAME,
an F32 tensor `NAME.in_sum2` (summed squared activations, one row per expert) and an F32
tensor `NAME.counts` (tokens seen per expert), plus `imatrix.datasets`,
`imatrix.chunk_count` and `imatrix.chunk_size`. The legacy `.dat` one is a plain binary
list of (name, ncall, values). Both are normalized to mean squared activations, exactly as
`tools/quantize/quantize.cpp::load_imatrix` does, and handed to `llama_model_quantize`
through `llama_model_quantize_params.imatrix` (a NULL-terminated array of
`llama_model_imatrix_data`), which is what the C tool does too.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggflip.errors import ModelFileError
from ggflip.gguf.header import GGUF_MAGIC, scan_gguf

_F32 = 0  # GGMLQuantizationType.F32


@dataclass(frozen=True)
class Imatrix:
    """Per-tensor importance vectors (float32), with the provenance llama.cpp records in the
    quant."""

    path: Path
    entries: dict[str, np.ndarray]
    datasets: tuple[str, ...]
    chunk_count: int


def load_imatrix(path: Path) -> Imatrix:
    """Read and normalize an imatrix file (GGUF or legacy format).

    Raises:
        ModelFileError: missing, unreadable, or not an imatrix file.
    """
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read imatrix file: {exc.strerror or exc}") from None
    loader = _load_gguf if magic == GGUF_MAGIC else _load_legacy
    imatrix = loader(path)
    if not imatrix.entries:
        raise ModelFileError(f"{path}: imatrix file holds no entries")
    for name, values in imatrix.entries.items():
        if not np.all(np.isfinite(values)):
            raise ModelFileError(f"{path}: imatrix entry '{name}' holds non-finite values")
    return imatrix


def _load_gguf(path: Path) -> Imatrix:
    layout = scan_gguf(path, lambda key: key.startswith("imatrix."))
    if not {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"} <= set(layout.fields):
        raise ModelFileError(
            f"{path}: missing imatrix metadata (imatrix.datasets/chunk_count/chunk_size); is it an "
            "imatrix?"
        )
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for tensor in layout.tensors:
            for suffix, into in ((".in_sum2", sums), (".counts", counts)):
                if tensor.name.endswith(suffix):
                    if tensor.ggml_type != _F32:
                        raise ModelFileError(f"{path}: imatrix tensor '{tensor.name}' must be F32")
                    into[tensor.name[: -len(suffix)]] = np.frombuffer(
                        data, dtype="<f4", count=tensor.n_weights, offset=tensor.offset
                    ).astype(np.float32)
    entries = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            raise ModelFileError(f"{path}: imatrix has mismatched sums and counts for '{name}'")
        n_counts = counts[name].size
        per_expert = sums[name].reshape(n_counts, -1)
        expert_counts = np.rint(counts[name]).astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            normalized = np.where(expert_counts > 0, per_expert / np.maximum(expert_counts, 1), 1.0)
        entries[name] = np.ascontiguousarray(normalized.reshape(-1), dtype=np.float32)
    datasets = tuple(
        d.decode("utf-8", "replace") for d in layout.fields.get("imatrix.datasets") or []
    )
    return Imatrix(path, entries, datasets, int(layout.fields.get("imatrix.chunk_count", 0)))


def _load_legacy(path: Path) -> Imatrix:
    data = path.read_bytes()
    try:
        (n_entries,), offset = struct.unpack_from("<i", data, 0), 4
        if n_entries < 1:
            raise ValueError("no entries")
        entries: dict[str, np.ndarray] = {}
        for _ in range(n_entries):
            (length,) = struct.unpack_from("<i", data, offset)
            name = data[offset + 4 : offset + 4 + length].decode("utf-8")
            offset += 4 + length
            ncall, nval = struct.unpack_from("<ii", data, offset)
            offset += 8
            if nval < 1 or offset + 4 * nval > len(data):
                raise ValueError(f"bad value count for '{name}'")
            values = np.frombuffer(data, dtype="<f4", count=nval, offset=offset).astype(np.float32)
            offset += 4 * nval
            entries[name] = values / ncall if ncall > 0 else values
        chunk_count = 0
        datasets: tuple[str, ...] = ()
        if offset + 8 <= len(data):
            chunk_count, length = struct.unpack_from("<ii", data, offset)
            if length > 0:
                datasets = (data[offset + 8 : offset + 8 + length].decode("utf-8", "replace"),)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{path}: not an imatrix file (neither GGUF nor legacy format: {exc})"
        ) from None
    return Imatrix(path, entries, datasets, chunk_count)


class ImatrixParams:
    """The ctypes arrays `llama_model_quantize_params` points at; keep it alive during the call."""

    def __init__(self, imatrix: Imatrix) -> None:
        import llama_cpp

        items = list(imatrix.entries.items())
        self._names = [name.encode() for name, _ in items]
        self._values = [values for _, values in items]
        array = (llama_cpp.llama_model_imatrix_data * (len(items) + 1))()
        for slot, name, values in zip(array, self._names, self._values):
            slot.name = name
            slot.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            slot.size = values.size
        self.data = array  # the last slot stays zeroed: the NULL terminator
        overrides: list[tuple[str, Any]] = [
            ("quantize.imatrix.file", str(imatrix.path)),
            ("quantize.imatrix.entries_count", len(items)),
        ]
        if imatrix.datasets:
            overrides.append(("quantize.imatrix.dataset", imatrix.datasets[0]))
        if imatrix.chunk_count > 0:
            overrides.append(("quantize.imatrix.chunks_count", imatrix.chunk_count))
        self.kv_overrides = (llama_cpp.llama_model_kv_override * (len(overrides) + 1))()
        for slot, (key, value) in zip(self.kv_overrides, overrides):
            slot.key = key.encode()
            if isinstance(value, int):
                slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
                slot.value.val_i64 = value
            else:
                slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
                slot.value.val_str = value.encode()[:127]
