"""Read a GGUF file's header with the `gguf` package, before llama.cpp ever sees the file.

llama.cpp may abort the whole process on a malformed file, so ggflip checks each model up
front: it is there, it starts with the GGUF magic, its tensors fit inside the file (a
truncated download fails this), and it carries a vocabulary whose fingerprint can be
compared with the baseline's.
"""
from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggflip.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
_EDGE_BYTES = 1 << 20


@dataclass(frozen=True)
class GgufHeader:
    """The facts of a GGUF file that ggflip needs before loading it."""

    path: Path
    architecture: str
    n_vocab: int
    vocab_fingerprint: str
    file_size: int
    n_tensors: int


def file_identity(path: Path) -> str:
    """A cheap identity of a file's content: size, mtime and a hash of its first and last MiB.

    Rewriting a file (re-quantizing, re-downloading) changes it; renaming or moving it does not.
    """
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE_BYTES))
        if stat.st_size > _EDGE_BYTES:
            handle.seek(max(_EDGE_BYTES, stat.st_size - _EDGE_BYTES))
            digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()[:32]


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, expected a .gguf file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file: {exc.strerror}") from None
    except ValueError as exc:  # e.g. an embedded NUL character
        raise ModelFileError(f"{path!r}: not a usable file path ({exc})") from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")


class _Cursor:
    """Sequential little-endian reads over a memory-mapped GGUF header."""

    _SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.offset = data, 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise EOFError("header ends early")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return value

    def string(self) -> bytes:
        length = self.unpack("Q")
        if self.offset + length > len(self.data):
            raise EOFError("string runs past the end of the file")
        value = self.data[self.offset : self.offset + length]
        self.offset += length
        return value

    def value(self, kind: int) -> Any:
        if kind == 8:
            return self.string()
        if kind == 9:
            item_kind, count = self.unpack("I"), self.unpack("Q")
            return [self.value(item_kind) for _ in range(count)]
        if kind not in self._SCALARS:
            raise ValueError(f"unknown value type {kind}")
        return self.unpack(self._SCALARS[kind])


def _read_kv_and_tensors(data: mmap.mmap) -> tuple[dict[str, Any], list[tuple[str, list[int], int, int]]]:
    cursor = _Cursor(data)
    cursor.offset = 4
    version = cursor.unpack("I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = cursor.unpack("Q"), cursor.unpack("Q")
    fields: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cursor.string().decode("utf-8", "replace")
        fields[key] = cursor.value(cursor.unpack("I"))
    tensors = []
    for _ in range(n_tensors):
        name = cursor.string().decode("utf-8", "replace")
        dims = [cursor.unpack("Q") for _ in range(cursor.unpack("I"))]
        tensors.append((name, dims, cursor.unpack("I"), cursor.unpack("Q")))
    alignment = int(fields.get("general.alignment", 32))
    data_start = (cursor.offset + alignment - 1) // alignment * alignment
    return fields, [(n, d, t, data_start + o) for n, d, t, o in tensors]


def _tensor_bytes(dims: list[int], ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    elements = 1
    for dim in dims:
        elements *= dim
    return elements // block * type_size


def read_header(path: Path) -> GgufHeader:
    """Validate a GGUF file and read its architecture and vocabulary.

    Parses the header directly (a 262k-token vocabulary takes well under a second, where
    `gguf.GGUFReader` takes ~10 s) and checks that every tensor lies inside the file.

    Raises:
        ModelFileError: missing, not a GGUF, truncated or corrupt, or without a vocabulary.
    """
    _check_magic(path)
    size = os.path.getsize(path)
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            fields, tensors = _read_kv_and_tensors(data)
            ends = [(offset + _tensor_bytes(dims, kind), name) for name, dims, kind, offset in tensors]
    except (EOFError, ValueError, KeyError, OverflowError, struct.error) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated GGUF header ({exc}); re-download or re-create it") from None
    for end, name in ends:
        if end > size:
            raise ModelFileError(
                f"{path}: truncated GGUF: tensor '{name}' ends at byte {end} but the file has {size}; re-download or re-create it"
            )
    tokens = fields.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ModelFileError(f"{path}: GGUF has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    digest = hashlib.sha256(b"\x00".join(tokens))
    architecture = fields.get("general.architecture", b"unknown")
    return GgufHeader(
        path=path,
        architecture=architecture.decode() if isinstance(architecture, bytes) else str(architecture),
        n_vocab=len(tokens),
        vocab_fingerprint=digest.hexdigest()[:16],
        file_size=size,
        n_tensors=len(tensors),
    )


def parameter_count(path: Path) -> int:
    """The number of weights in a GGUF (the product of each tensor's dimensions, summed).

    With the file size it gives the bits per weight a quant really spends.

    Raises:
        ModelFileError: missing, not a GGUF, or a corrupt header.
    """
    _check_magic(path)
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _, tensors = _read_kv_and_tensors(data)
    except (EOFError, ValueError, OverflowError, struct.error) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated GGUF header ({exc}); re-download or re-create it") from None
    return sum(math.prod(dims) for _, dims, _, _ in tensors)
