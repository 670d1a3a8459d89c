"""Read where a GGUF's tensors lie without decoding its metadata values.

`gguf.GGUFReader` builds numpy views for every element of every metadata array, which
takes seconds for a 262,144-token vocabulary on a small machine. `scan_gguf` only skips
over the metadata and reads the tensor table, so checking that a file is complete
(every tensor inside it) or computing its bits per weight costs milliseconds.
"""
from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# GGUFValueType codes: fixed-size scalars by byte size, then STRING and ARRAY.
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class TensorExtent(NamedTuple):
    """One tensor's name, weight count, and where its data lies in the file."""

    name: str
    n_weights: int
    n_bytes: int
    offset: int


@dataclass(frozen=True)
class GgufLayout:
    """A GGUF's metadata key count and tensor table, in file order."""

    n_kv: int
    tensors: tuple[TensorExtent, ...]

    @property
    def data_end(self) -> int:
        """Byte just past the last tensor's data; a complete file is at least this long."""
        return max((t.offset + t.n_bytes for t in self.tensors), default=0)

    @property
    def bits_per_weight(self) -> float:
        """Mean bits per weight of the tensor data (metadata not counted)."""
        n_weights = sum(t.n_weights for t in self.tensors)
        return 8.0 * sum(t.n_bytes for t in self.tensors) / max(n_weights, 1)


def scan_gguf(path: Path) -> GgufLayout:
    """Read a GGUF's header and tensor table without decoding metadata values.

    Raises:
        OSError: the file cannot be opened.
        ValueError: it is not a GGUF v2/v3 file, or its header is truncated or corrupt.
    """
    with path.open("rb") as handle:
        if path.stat().st_size < 24:
            raise ValueError(f"{path} is too short to be a GGUF file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _parse_layout(buf)
            except (struct.error, KeyError) as exc:
                raise ValueError(f"{path} has a truncated or corrupt GGUF header ({exc})") from exc


def _parse_layout(buf: mmap.mmap) -> GgufLayout:
    """Walk the header, skipping metadata values and collecting the tensor table."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    if magic != b"GGUF" or version not in (2, 3):
        raise ValueError(f"not a GGUF v2/v3 file (magic {magic!r}, version {version})")
    offset, alignment = 24, 32
    for _ in range(n_kv):
        key, offset = _read_gguf_string(buf, offset)
        (value_type,) = struct.unpack_from("<I", buf, offset)
        if key == b"general.alignment":
            (alignment,) = struct.unpack_from("<I", buf, offset + 4)
        offset = _skip_gguf_value(buf, offset + 4, value_type)
    entries = []
    for _ in range(n_tensors):
        name, offset = _read_gguf_string(buf, offset)
        (n_dims,) = struct.unpack_from("<I", buf, offset)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, offset + 4)
        ggml_type, relative = struct.unpack_from("<IQ", buf, offset + 4 + 8 * n_dims)
        offset += 16 + 8 * n_dims
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n_weights = math.prod(dims)
        n_bytes = n_weights // block * type_size
        entries.append((name.decode("utf-8", "replace"), n_weights, n_bytes, relative))
    data_start = -(-offset // alignment) * alignment
    return GgufLayout(n_kv, tuple(TensorExtent(n, w, b, data_start + r) for n, w, b, r in entries))


def _read_gguf_string(buf: mmap.mmap, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<Q", buf, offset)
    end = offset + 8 + length
    if end > len(buf):
        raise struct.error("string runs past the header")
    return buf[offset + 8:end], end


def _skip_gguf_value(buf: mmap.mmap, offset: int, value_type: int) -> int:
    """Return the offset just past one metadata value of GGUFValueType `value_type`."""
    if value_type in _GGUF_SCALAR_SIZES:
        return offset + _GGUF_SCALAR_SIZES[value_type]
    if value_type == _GGUF_STRING:
        return _read_gguf_string(buf, offset)[1]
    if value_type != _GGUF_ARRAY:
        raise struct.error(f"unknown metadata value type {value_type}")
    item_type, count = struct.unpack_from("<IQ", buf, offset)
    offset += 12
    if item_type in _GGUF_SCALAR_SIZES:
        return offset + count * _GGUF_SCALAR_SIZES[item_type]
    for _ in range(count):
        offset = _skip_gguf_value(buf, offset, item_type)
    return offset
