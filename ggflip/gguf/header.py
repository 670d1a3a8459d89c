"""Read a GGUF file's header with one fast parser, before llama.cpp ever sees the file.

llama.cpp may abort the whole process on a malformed file, so ggflip checks each model up
front: it is there, it starts with the GGUF magic, its tensors fit inside the file (a
truncated download fails this), and it carries a vocabulary whose fingerprint can be
compared with the baseline's. The same parse gives what `ggflip inspect` shows (parameter
count, bits per weight, tensor types, context length, chat template).

The header is parsed directly (a 262k-token vocabulary in well under a second, where
`gguf.GGUFReader` takes ~10 s); metadata values nobody asked for are skipped, not decoded.
A split GGUF (`NAME-00001-of-00003.gguf`) is read from its first part, which holds the
metadata; every part's tensors are counted and checked.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import re
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggflip.errors import ModelFileError
from ggflip.store.reading import read_named_file

GGUF_MAGIC = b"GGUF"
_EDGE_BYTES = 1 << 20
_SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
# GGUFValueType codes: fixed-size scalars (struct format), then STRING=8 and ARRAY=9.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's name, ggml type, weight count, and where its data lies in its file."""

    name: str
    ggml_type: int
    n_weights: int
    n_bytes: int
    offset: int


@dataclass(frozen=True)
class GgufLayout:
    """One GGUF file's metadata (the decoded keys only) and tensor table, in file order."""

    path: Path
    n_kv: int
    fields: Mapping[str, Any]
    tensors: tuple[TensorInfo, ...]

    @property
    def data_end(self) -> int:
        """Byte just past the last tensor's data; a complete file is at least this long."""
        return max((t.offset + t.n_bytes for t in self.tensors), default=0)

    @property
    def n_params(self) -> int:
        """Weights in this file's tensors."""
        return sum(t.n_weights for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        """Mean bits per weight of the tensor data (metadata not counted), as llama.cpp prints
        it."""
        return 8.0 * sum(t.n_bytes for t in self.tensors) / max(self.n_params, 1)


@dataclass(frozen=True)
class GgufHeader:
    """The facts of a GGUF model (all parts of a split one) that ggflip needs or shows."""

    path: Path
    architecture: str
    n_vocab: int
    vocab_fingerprint: str
    file_size: int
    n_tensors: int
    n_params: int = 0
    bits_per_weight: float = math.nan
    file_type: str = "unknown"
    name: str = ""
    context_length: int | None = None
    has_chat_template: bool = False
    chat_template_digest: str | None = None  # sha256 prefix of tokenizer.chat_template
    tensor_types: Mapping[str, int] = field(default_factory=dict)
    parts: tuple[Path, ...] = ()
    tensor_bytes: int = 0  # the tensor data of every part: what llama.cpp loads as weights
    hparams: Mapping[str, Any] = field(default_factory=dict)  # the `ARCH.*` metadata keys
    imatrix: Mapping[str, Any] = field(default_factory=dict)  # `imatrix_provenance`


def split_parts(path: Path) -> tuple[Path, ...]:
    """Every part of a split GGUF named like `NAME-00001-of-00003.gguf`, else just `path`."""
    match = _SPLIT_NAME.match(path.name)
    if not match:
        return (path,)
    count = int(match["count"])
    return tuple(
        path.with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    )


def file_identity(path: Path) -> str:
    """A cheap identity of a model's content: size, mtime and first and last MiB of every part.

    Rewriting a file (re-quantizing, re-downloading) changes it; renaming or moving it does not.
    """
    digest = hashlib.sha256()
    for part in split_parts(path):
        stat = part.stat()
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        with part.open("rb") as handle:
            digest.update(handle.read(_EDGE_BYTES))
            if stat.st_size > _EDGE_BYTES:
                handle.seek(max(_EDGE_BYTES, stat.st_size - _EDGE_BYTES))
                digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()[:32]


class _Cursor:
    """Sequential little-endian reads over a memory-mapped GGUF header."""

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

    def value(self, kind: int, keep: bool) -> Any:
        """Read (or, with keep=False, skip) one metadata value of GGUFValueType `kind`."""
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.unpack("I"), self.unpack("Q")
            if item_kind in _SCALARS and not keep:
                self.offset += count * struct.calcsize(_SCALARS[item_kind])
                if self.offset > len(self.data):
                    raise EOFError("array runs past the end of the file")
                return None
            return [self.value(item_kind, keep) for _ in range(count)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown value type {kind}")
        return self.unpack(_SCALARS[kind])


def _parse(data: mmap.mmap, path: Path, wanted: Callable[[str], bool]) -> GgufLayout:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    cursor = _Cursor(data)
    cursor.offset = 4
    version = cursor.unpack("I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = cursor.unpack("Q"), cursor.unpack("Q")
    fields: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cursor.string().decode("utf-8", "replace")
        keep = key == "general.alignment" or wanted(key)
        value = cursor.value(cursor.unpack("I"), keep)
        if keep:
            fields[key] = value
    entries = []
    for _ in range(n_tensors):
        name = cursor.string().decode("utf-8", "replace")
        dims = [cursor.unpack("Q") for _ in range(cursor.unpack("I"))]
        ggml_type, relative = cursor.unpack("I"), cursor.unpack("Q")
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n_weights = math.prod(dims)
        entries.append((name, ggml_type, n_weights, n_weights // block * type_size, relative))
    alignment = int(fields.get("general.alignment", 32))
    data_start = (cursor.offset + alignment - 1) // alignment * alignment
    tensors = tuple(TensorInfo(n, t, w, b, data_start + r) for n, t, w, b, r in entries)
    return GgufLayout(path=path, n_kv=n_kv, fields=fields, tensors=tensors)


def _open_check(path: Path) -> None:
    magic = read_named_file(path, "model file", ModelFileError, n_bytes=4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")


def scan_gguf(path: Path, wanted: Callable[[str], bool] = lambda key: False) -> GgufLayout:
    """Parse one GGUF file's header, decoding only the metadata keys `wanted` accepts.

    Raises:
        ModelFileError: missing, not a GGUF, or its header is truncated or corrupt.
    """
    _open_check(path)
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            return _parse(data, path, wanted)
    except (EOFError, ValueError, KeyError, OverflowError, struct.error) as exc:
        raise ModelFileError(
            f"{path}: corrupt or truncated GGUF header ({exc}); re-download or re-create it"
        ) from None


def _check_extents(layout: GgufLayout) -> int:
    size = os.path.getsize(layout.path)
    for tensor in layout.tensors:
        end = tensor.offset + tensor.n_bytes
        if end > size:
            raise ModelFileError(
                f"{layout.path}: truncated GGUF: tensor '{tensor.name}' ends at byte {end} but the "
                f"file has {size}; re-download or re-create it"
            )
    return size


def _header_key(key: str) -> bool:
    """The tokenizer keys ggflip reads and every non-tokenizer key (general facts and the
    architecture's hyperparameters, small scalars and per-layer arrays)."""
    return key in ("tokenizer.ggml.tokens", "tokenizer.chat_template") or not key.startswith(
        "tokenizer."
    )


IMATRIX_PREFIX = "quantize.imatrix."
IMATRIX_KEYS = ("file", "dataset", "chunks_count", "entries_count")
"""The imatrix provenance llama-quantize writes (`quantize.imatrix.file`, ...), by short name."""


def imatrix_provenance(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The `quantize.imatrix.*` keys of a header, by short name (`file`, `dataset`,
    `chunks_count`, `entries_count`); empty for a model quantized without an imatrix."""
    out: dict[str, Any] = {}
    for name in IMATRIX_KEYS:
        value = fields.get(IMATRIX_PREFIX + name)
        if isinstance(value, list):  # llama.cpp may write the datasets as an array
            value = ", ".join(_text(v) for v in value)
        if value is not None:
            out[name] = value if isinstance(value, int) else _text(value)
    return out


def _text(value: Any, default: str = "") -> str:
    return (
        value.decode("utf-8", "replace")
        if isinstance(value, bytes)
        else (default if value is None else str(value))
    )


def _digest(value: Any) -> str | None:
    """A short sha256 of a metadata string (None when absent or empty), to compare two files'."""
    if not value:
        return None
    return hashlib.sha256(_text(value).encode()).hexdigest()[:16]


def file_type_name(code: int | None) -> str:
    """The name of a `general.file_type` value ("MOSTLY_Q4_K_M" -> "Q4_K_M"), or "unknown"."""
    if code is None:
        return "unknown"
    from gguf.constants import LlamaFileType

    try:
        return LlamaFileType(code).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"type {code}"


def read_header(path: Path) -> GgufHeader:
    """Validate a GGUF model (every part of a split one) and read the facts ggflip needs.

    Raises:
        ModelFileError: missing, not a GGUF, truncated or corrupt, a split part missing,
            or without a vocabulary.
    """
    parts = split_parts(path)
    first = scan_gguf(path, _header_key)
    size = _check_extents(first)
    layouts = [first]
    for part in parts[1:]:
        if not part.exists():
            raise ModelFileError(
                f"{part}: split GGUF part missing ({len(parts)} parts expected next to {path.name})"
            )
        layouts.append(scan_gguf(part))
        size += _check_extents(layouts[-1])
    fields = first.fields
    tokens = fields.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ModelFileError(f"{path}: GGUF has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    architecture = _text(fields.get("general.architecture"), "unknown")
    tensors = [t for layout in layouts for t in layout.tensors]
    n_params = sum(t.n_weights for t in tensors)
    context = fields.get(f"{architecture}.context_length")
    tensor_bytes = sum(t.n_bytes for t in tensors)
    return GgufHeader(
        path=path,
        architecture=architecture,
        n_vocab=len(tokens),
        vocab_fingerprint=hashlib.sha256(b"\x00".join(tokens)).hexdigest()[:16],
        file_size=size,
        n_tensors=len(tensors),
        n_params=n_params,
        bits_per_weight=8.0 * tensor_bytes / max(n_params, 1),
        file_type=file_type_name(fields.get("general.file_type")),
        name=_text(fields.get("general.name")),
        context_length=int(context) if isinstance(context, int) else None,
        has_chat_template=bool(fields.get("tokenizer.chat_template")),
        chat_template_digest=_digest(fields.get("tokenizer.chat_template")),
        tensor_types=dict(Counter(_type_name(t.ggml_type) for t in tensors).most_common()),
        parts=parts,
        tensor_bytes=tensor_bytes,
        hparams={k: v for k, v in fields.items() if k.startswith(f"{architecture}.")},
        imatrix=imatrix_provenance(fields),
    )


def _type_name(ggml_type: int) -> str:
    from gguf.constants import GGMLQuantizationType

    return GGMLQuantizationType(ggml_type).name


def parameter_count(path: Path) -> int:
    """The number of weights in a GGUF model (all parts of a split one), from its tensor table.

    Raises:
        ModelFileError: missing, not a GGUF, or a corrupt header.
    """
    return sum(scan_gguf(part).n_params for part in split_parts(path))


def header_facts(header: GgufHeader) -> dict[str, Any]:
    """What `ggflip inspect --json` says about one model file (also what a setup view shows)."""
    return {
        "path": str(header.path),
        "parts": [str(part) for part in header.parts],
        "name": header.name,
        "architecture": header.architecture,
        "file_type": header.file_type,
        "n_params": header.n_params,
        "file_size": header.file_size,
        "bits_per_weight": round(header.bits_per_weight, 4),
        "n_tensors": header.n_tensors,
        "tensor_types": dict(header.tensor_types),
        "n_vocab": header.n_vocab,
        "vocab_fingerprint": header.vocab_fingerprint,
        "context_length": header.context_length,
        "has_chat_template": header.has_chat_template,
        "imatrix": dict(header.imatrix),
    }
