"""Hybrid GGUFs: one file's metadata and tensor order, some tensors' data copied bit for bit from
other files of the same model (no re-quantization).

`tensor_table` reads the tensor tables of two or more files of one model (the fast header parser)
and refuses files of different architectures or tensor names, one line each. `Splicer.write`
writes a hybrid with the `gguf` writer: the metadata of a `base` file (its `general.file_type`
too), then every tensor in the base's order, each taken from the file `taken` names for it
(the base's own otherwise), its raw bytes and ggml type unchanged. llama.cpp loads a tensor by
its own type, so a hybrid runs like any quant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggflip.errors import ModelFileError, UsageError
from ggflip.gguf.header import GgufLayout, scan_gguf, split_parts
from ggflip.store.atomic import atomic_output

_ARCH_KEY = "general.architecture"


@dataclass(frozen=True)
class TensorRow:
    """One tensor of the model as each file holds it (`types`, `n_bytes` in the files' order)."""

    name: str
    n_weights: int
    types: tuple[str, ...]
    n_bytes: tuple[int, ...]


def ggml_type_name(code: int) -> str:
    """`GGMLQuantizationType` name of a ggml type code ("Q4_K", "F16")."""
    from gguf.constants import GGMLQuantizationType

    return GGMLQuantizationType(code).name


def _layout(path: Path) -> GgufLayout:
    if len(split_parts(path)) > 1:
        raise UsageError(
            f"{path}: split GGUFs cannot be spliced yet; merge it first (llama-gguf-split --merge)"
        )
    return scan_gguf(path, lambda key: key == _ARCH_KEY)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def tensor_table(paths: Sequence[Path]) -> tuple[TensorRow, ...]:
    """The tensors of the first file, in its order, with their type and size in every file.

    Raises:
        ModelFileError: a file is missing or not a GGUF.
        UsageError: the files are of different architectures or hold different tensors.
    """
    layouts = [_layout(path) for path in paths]
    first = layouts[0]
    by_name = [{t.name: t for t in layout.tensors} for layout in layouts]
    for layout, names in zip(layouts[1:], by_name[1:]):
        arch, other = _text(first.fields.get(_ARCH_KEY)), _text(layout.fields.get(_ARCH_KEY))
        if arch != other:
            raise UsageError(
                f"{layout.path.name} is a {other} model and {first.path.name} a {arch} one: "
                "attribution needs two files of the same model"
            )
        missing = [t.name for t in first.tensors if t.name not in names]
        extra = sorted(set(names) - set(by_name[0]))
        if missing or extra:
            which = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the other lacks"
            raise UsageError(
                f"{layout.path.name} and {first.path.name} hold different tensors "
                f"({layout.path.name} {which}; {len(missing) + len(extra)} differ): "
                "attribution needs two files of the same model"
            )
        for tensor in first.tensors:
            if names[tensor.name].n_weights != tensor.n_weights:
                raise UsageError(
                    f"tensor {tensor.name} has {names[tensor.name].n_weights} weights in "
                    f"{layout.path.name} and {tensor.n_weights} in {first.path.name}: not the "
                    "same model"
                )
    return tuple(
        TensorRow(
            t.name,
            t.n_weights,
            tuple(ggml_type_name(names[t.name].ggml_type) for names in by_name),
            tuple(names[t.name].n_bytes for names in by_name),
        )
        for t in first.tensors
    )


def hybrid_bytes(base: Path, rows: Sequence[TensorRow], sources: Sequence[int]) -> int:
    """About how large a hybrid of `rows` (tensor i taken from file `sources[i]`) is: the base
    file's header and metadata, the tensors' bytes and their alignment padding."""
    layout = _layout(base)
    header = min((t.offset for t in layout.tensors), default=0)
    alignment = int(layout.fields.get("general.alignment", 32))
    data = sum(row.n_bytes[source] for row, source in zip(rows, sources))
    return header + data + alignment * len(rows)


class Splicer:
    """Writes hybrids of a few files, each file's `gguf.GGUFReader` opened once (reading a
    large vocabulary's metadata takes seconds)."""

    def __init__(self) -> None:
        self._readers: dict[Path, Any] = {}

    def reader(self, path: Path) -> Any:
        """The open reader of `path`."""
        from ggflip.gguf.quantize import open_reader

        if path not in self._readers:
            self._readers[path] = open_reader(path)
        return self._readers[path]

    def write(self, base: Path, taken: Mapping[str, Path], out: Path) -> None:
        """Write at `out` (atomically) `base` with the tensors named in `taken` copied from
        the file each names.

        Raises:
            ModelFileError: a file is unreadable or lacks a tensor of `taken`.
            DiskFullError: the disk filled up while writing.
        """
        from gguf import GGUFWriter

        from ggflip.gguf.quantize import copy_metadata

        reader = self.reader(base)
        tensors = {
            path: {t.name: t for t in self.reader(path).tensors} for path in {*taken.values()}
        }
        chosen = []
        for tensor in reader.tensors:
            source = taken.get(tensor.name)
            if source is not None and tensor.name not in tensors[source]:
                raise ModelFileError(f"{source} has no tensor {tensor.name}")
            chosen.append(tensor if source is None else tensors[source][tensor.name])
        arch = reader.get_field(_ARCH_KEY)
        with atomic_output(out) as tmp:
            writer = GGUFWriter(tmp, arch=arch.contents())
            try:
                copy_metadata(reader, writer)
                for tensor in chosen:
                    data = tensor.data
                    writer.add_tensor_info(
                        tensor.name, data.shape, data.dtype, data.nbytes, tensor.tensor_type
                    )
                writer.write_header_to_file()
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                for tensor in chosen:
                    writer.write_tensor_data(tensor.data)
            finally:
                writer.close()


def same_tensors(first: Path, second: Path) -> frozenset[str]:
    """The tensors stored identically (same type, same bytes) in both files."""
    import mmap

    one, two = _layout(first), _layout(second)
    others = {t.name: t for t in two.tensors}
    same = set()
    with first.open("rb") as a, second.open("rb") as b:
        with (
            mmap.mmap(a.fileno(), 0, access=mmap.ACCESS_READ) as data_a,
            mmap.mmap(b.fileno(), 0, access=mmap.ACCESS_READ) as data_b,
        ):
            for tensor in one.tensors:
                other = others.get(tensor.name)
                if other is None or other.ggml_type != tensor.ggml_type:
                    continue
                if other.n_bytes != tensor.n_bytes:
                    continue
                left = data_a[tensor.offset : tensor.offset + tensor.n_bytes]
                right = data_b[other.offset : other.offset + other.n_bytes]
                if left == right:
                    same.add(tensor.name)
    return frozenset(same)
