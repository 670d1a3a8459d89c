"""The llama.cpp backend, over llama-cpp-python's low-level API.

Each request is decoded in an explicit `llama_batch` with logits requested only at the
scored positions and read with `llama_get_logits_ith`, so memory is one n_vocab row per
scored position, never n_ctx x n_vocab (the `logits_all=True` path of the high-level API).
Several requests share one decode under distinct sequence ids (up to `n_seq_max`), packed
into batches of at most `n_batch` tokens. Requests whose `shared_prefix` hints name the same
prefix tokens share it: the prefix is decoded once into sequence 0, kept in the KV cache while
the next calls repeat it (consecutive questions of one MMLU subject), and copied into each
request's sequence with `llama_memory_seq_cp` (with the unified KV cache this adds a sequence
id to the same cells, no copy), so only each request's own tail is decoded. Greedy generation
(`generate`, `ggflip.backends.llama_generate`) prefills its prompts the same way. With `kv_unified`
off (runs that share no prefix, `ggflip.choice.spec.kv_layout`) each sequence has a KV stream
of its own, `n_ctx` cells, attending only over them, and the hints are ignored. Native logs go
to Python logging (`ggflip.llama`).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ggflip.backends.base import ModelProbe, ScoreRequest
from ggflip.backends.busy import warn_if_busy
from ggflip.backends.context_params import batch_sizes, context_params, set_mmap
from ggflip.backends.devices import (
    check_reachable,
    device_descriptions,
    model_devices,
    tensor_split_array,
)
from ggflip.backends.llama_generate import GreedyGeneration
from ggflip.backends.llama_slices import SlicedLogits
from ggflip.backends.numerics import LlamaSettingsFactory
from ggflip.backends.row_buffers import RowBuffers
from ggflip.config.models_toml import LlamaSettings, ModelSpec
from ggflip.errors import BackendError, ModelFileError
from ggflip.gguf.header import GgufHeader, file_identity, read_header
from ggflip.gguf.memory import memory_or_reason
from ggflip.llama_log import llama_errors_since, mark_llama_log

_init_lock = threading.Lock()
_initialized = False


def _llama():  # type: ignore[no-untyped-def]
    """Import llama_cpp once, initialise its backend and route its logs to Python logging."""
    global _initialized
    import llama_cpp

    from ggflip.llama_log import install_llama_log_handler

    with _init_lock:
        if not _initialized:
            install_llama_log_handler()
            llama_cpp.llama_backend_init()
            _initialized = True
    return llama_cpp


class LlamaBackend(GreedyGeneration, SlicedLogits):
    """One GGUF loaded in llama.cpp with one context (batched greedy generation and the sliced
    logits of one long request: the mixins)."""

    def __init__(self, path: Path, settings: LlamaSettings) -> None:
        lib = _llama()
        self._lib = lib
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = settings.n_gpu_layers
        model_params.main_gpu = settings.main_gpu
        set_mmap(lib, model_params, settings.use_mmap)
        model_params.use_extra_bufts = settings.repack
        # Kept on self: llama.cpp reads these arrays while loading.
        self._devices = model_devices(lib, settings.rpc_servers)
        if self._devices is not None:
            model_params.devices = ctypes.cast(self._devices, ctypes.c_void_p)
        self._tensor_split = tensor_split_array(lib, settings.tensor_split)
        if self._tensor_split is not None:
            model_params.tensor_split = ctypes.cast(
                self._tensor_split, ctypes.POINTER(ctypes.c_float)
            )
        mark = mark_llama_log()
        self._model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            reason = "; ".join(llama_errors_since(mark)) or "no reason logged"
            raise ModelFileError(f"{path}: llama.cpp could not load this model: {reason}")
        self._vocab = lib.llama_model_get_vocab(self._model)
        self._n_vocab = int(lib.llama_vocab_n_tokens(self._vocab))
        self._add_bos = bool(lib.llama_vocab_get_add_bos(self._vocab))
        self._bos = int(lib.llama_vocab_bos(self._vocab))
        ctx_params = context_params(lib, settings)
        mark = mark_llama_log()
        self._ctx = lib.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            lib.llama_model_free(self._model)
            reason = "; ".join(llama_errors_since(mark)) or "no reason logged"
            plain_kv = settings.type_k == settings.type_v == "f16"
            fix = "lower n_ctx" if plain_kv else "lower n_ctx or change type_k/type_v"
            raise BackendError(
                f"{path}: llama.cpp could not create a context with n_ctx={settings.n_ctx}, KV "
                f"cache K {settings.type_k} V {settings.type_v} ({fix}): {reason}"
            )
        self._n_ctx = int(lib.llama_n_ctx_seq(self._ctx))  # the cells one sequence can use
        self._n_cells = int(lib.llama_n_ctx(self._ctx))  # the cells of all sequences together
        self._n_batch = int(lib.llama_n_batch(self._ctx))
        self._n_ubatch = int(lib.llama_n_ubatch(self._ctx))
        self._n_seq_max = settings.n_seq_max
        self._batch = lib.llama_batch_init(self._n_batch, 0, 1)
        self._memory = lib.llama_get_memory(self._ctx)
        self._path = path
        # llama_memory_seq_cp between streams copies whole streams: prefixes are shared only in
        # a unified cache
        self._share_prefixes = settings.n_seq_max > 1 and settings.kv_unified
        self._cached_prefix: tuple[int, ...] | None = None
        self._rows = RowBuffers(self._n_vocab)

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (self._lib.llama_token * capacity)()
        count = self._lib.llama_tokenize(
            self._vocab, data, len(data), buffer, capacity, False, special
        )
        if count < 0:
            raise BackendError(f"tokenizer needed {-count} slots for a {len(data)}-byte text")
        tokens = list(buffer[:count])
        if add_bos and self._add_bos and self._bos >= 0:
            tokens.insert(0, self._bos)
        return tokens

    def token_pieces(self, tokens: Sequence[int]) -> list[str]:
        buffer = ctypes.create_string_buffer(256)
        pieces = []
        for token in tokens:
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            pieces.append(buffer.raw[: max(size, 0)].decode("utf-8", errors="replace"))
        return pieces

    def logits(self, requests: Sequence[ScoreRequest]) -> list[NDArray[np.float32]]:
        results = self._rows.take([len(r.positions) for r in requests])
        for request in requests:
            if len(request.tokens) > self._n_ctx:
                raise BackendError(
                    f"a prompt of {len(request.tokens)} tokens does not fit n_ctx={self._n_ctx} "
                    "(raise n_ctx in models.toml)"
                )
        plain = [i for i, r in enumerate(requests) if self._prefix_len(r) == 0]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, request in enumerate(requests):
            n = self._prefix_len(request)
            if n:
                groups.setdefault(request.tokens[:n], []).append(index)
        for prefix, members in groups.items():
            self._decode_shared(prefix, members, requests, results)
        if plain:
            self._forget_prefix()
            for wave in self._waves([requests[i] for i in plain], self._n_seq_max, self._n_cells):
                self._lib.llama_memory_clear(self._memory, True)
                self._decode_wave(
                    [(seq, plain[i], requests[plain[i]], 0) for seq, i in enumerate(wave)], results
                )
        return results

    def _prefix_len(self, request: ScoreRequest) -> int:
        if not self._share_prefixes or not request.positions:
            return 0
        return max(0, min(request.shared_prefix, min(request.positions), len(request.tokens) - 1))

    def _forget_prefix(self) -> None:
        self._cached_prefix = None

    def _decode_shared(
        self,
        prefix: tuple[int, ...],
        members: list[int],
        requests: Sequence[ScoreRequest],
        results: list[NDArray[np.float32]],
    ) -> None:
        """Decode `prefix` once into sequence 0 (kept across calls while it repeats), copy it to
        each member's sequence, decode the rest."""
        n = len(prefix)
        if self._cached_prefix != prefix:
            self._lib.llama_memory_clear(self._memory, True)
            self._decode_wave([(0, -1, ScoreRequest(prefix, ()), 0)], results)
            self._cached_prefix = prefix
        suffixes = [ScoreRequest(requests[i].tokens[n:], ()) for i in members]
        for wave in self._waves(suffixes, self._n_seq_max - 1, self._n_ctx - n):
            for seq in range(1, self._n_seq_max):
                self._lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
            for seq in range(1, len(wave) + 1):
                self._lib.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)
            self._decode_wave(
                [(seq + 1, members[i], requests[members[i]], n) for seq, i in enumerate(wave)],
                results,
            )

    @staticmethod
    def _waves(requests: Sequence[ScoreRequest], max_seqs: int, max_cells: int) -> list[list[int]]:
        """Group requests so each group fits `max_seqs` sequences and `max_cells` cells of KV
        cache."""
        waves: list[list[int]] = []
        current: list[int] = []
        used = 0
        for index, request in enumerate(requests):
            length = len(request.tokens)
            if length > max_cells:
                raise BackendError(
                    f"a prompt needs {length} more KV cells than the {max_cells} left (raise n_ctx "
                    "in models.toml)"
                )
            if current and (len(current) >= max_seqs or used + length > max_cells):
                waves.append(current)
                current, used = [], 0
            current.append(index)
            used += length
        if current:
            waves.append(current)
        return waves

    def _decode_wave(
        self, wave: list[tuple[int, int, ScoreRequest, int]], results: list[NDArray[np.float32]]
    ) -> None:
        """Decode each (seq, request index, request, start) from token `start` on, packing n_batch
        tokens per decode."""
        batch = self._batch
        pending: list[tuple[int, int, int]] = []  # (batch slot, request index, row)
        n = 0
        for seq, index, request, start in wave:
            wanted = {pos: row for row, pos in enumerate(request.positions)}
            for pos in range(start, len(request.tokens)):
                if n == self._n_batch:
                    self._flush(n, pending, results)
                    n, pending = 0, []
                batch.token[n] = request.tokens[pos]
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                row = wanted.get(pos)
                batch.logits[n] = row is not None
                if row is not None:
                    pending.append((n, index, row))
                n += 1
        if n:
            self._flush(n, pending, results)

    def _flush(
        self, n_tokens: int, pending: list[tuple[int, int, int]], results: list[NDArray[np.float32]]
    ) -> None:
        self._batch.n_tokens = n_tokens
        status = self._lib.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise BackendError(f"{self._path}: llama_decode failed with status {status}")
        for slot, index, row in pending:
            pointer = self._lib.llama_get_logits_ith(self._ctx, slot)
            results[index][row] = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def chat_template(self) -> str | None:
        template = self._lib.llama_model_chat_template(self._model, None)
        return template.decode("utf-8", errors="replace") if template else None

    def special_token(self, which: str) -> str:
        eos = int(self._lib.llama_vocab_eos(self._vocab))
        token = {"bos": self._bos, "eos": eos}.get(which, -1)
        if token < 0:
            return ""
        buffer = ctypes.create_string_buffer(256)
        size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
        return buffer.raw[: max(size, 0)].decode("utf-8", errors="replace")

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._lib.llama_model_free(self._model)
            self._ctx = None
            self._rows = RowBuffers(self._n_vocab)  # the pooled memory goes with the model


_build: dict[str, Any] | None = None


def llama_build() -> dict[str, Any]:
    """The llama.cpp build this process uses: llama-cpp-python's version, the CPU features it
    was compiled with (`llama_print_system_info`) and its devices; computed once per process."""
    global _build
    if _build is None:
        lib = _llama()
        _build = {
            "llama_cpp_python": str(lib.__version__),
            "system_info": lib.llama_print_system_info().decode(errors="replace").strip(" |"),
            "devices": device_descriptions(lib),
        }
    return dict(_build)


def context_memory(header: GgufHeader, settings: LlamaSettings) -> dict[str, Any]:
    """`memory`/`memory_unknown` of a model at `settings`' context as a user runs it: one
    unified KV cache of `n_ctx` cells, of the settings' KV types and swa_full, n_ubatch capped
    as llama.cpp caps it (`batch_sizes`). A run whose requests share no prefix decodes on a
    stream per sequence (`kv_unified` off, `llama_n_ctx` cells: n_seq_max times as many), a
    layout for speed whose cache no user's own run needs, so it is not what `memory` counts:
    files are compared (`ggflip pick`) at the memory they need, whichever layout measured them."""
    memory, reason = memory_or_reason(
        header,
        settings.n_ctx,
        kv_type_k=settings.type_k,
        kv_type_v=settings.type_v,
        swa_full=settings.swa_full,
        n_seq_max=settings.n_seq_max,
        n_ubatch=batch_sizes(settings)[1],
        kv_unified=True,
    )
    return {"memory": memory, "memory_unknown": reason}


class LlamaBackendFactory(LlamaSettingsFactory):
    """Probes GGUF headers with `gguf` and loads models with llama.cpp."""

    def build_info(self) -> dict[str, Any]:
        return llama_build()

    def probe(self, spec: ModelSpec) -> ModelProbe:
        if spec.ref and spec.path.parts[:1] == ("hf",) and not spec.path.exists():
            raise ModelFileError(
                f"{spec.ref}: Hugging Face reference not resolved (call "
                "ggflip.config.resolve.resolve_model_set)"
            )
        header = read_header(spec.path)
        for endpoint in spec.llama.rpc_servers:
            check_reachable(
                endpoint
            )  # before any model loads: llama.cpp aborts on an unreachable server
        return ModelProbe(
            n_vocab=header.n_vocab,
            vocab_fingerprint=header.vocab_fingerprint,
            architecture=header.architecture,
            identity=file_identity(spec.path),
            bits_per_weight=header.bits_per_weight,
            file_size=header.file_size,
            n_params=header.n_params,
            chat_template_digest=header.chat_template_digest,
            **context_memory(header, spec.llama),
            context_length=header.context_length,
            imatrix=dict(header.imatrix),
        )

    def open(self, spec: ModelSpec) -> LlamaBackend:
        warn_if_busy(spec.llama)
        return LlamaBackend(spec.path, spec.llama)
