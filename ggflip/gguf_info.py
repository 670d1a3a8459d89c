"""Read a GGUF file's header with the `gguf` package, before llama.cpp ever sees the file.

llama.cpp may abort the whole process on a malformed file, so ggflip checks each model up
front: it is there, it starts with the GGUF magic, its tensors fit inside the file (a
truncated download fails this), and it carries a vocabulary whose fingerprint can be
compared with the baseline's.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

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
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")


def read_header(path: Path) -> GgufHeader:
    """Validate a GGUF file and read its architecture and vocabulary.

    Raises:
        ModelFileError: missing, not a GGUF, truncated or corrupt, or without a vocabulary.
    """
    _check_magic(path)
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on damage
        raise ModelFileError(f"{path}: corrupt or truncated GGUF ({type(exc).__name__}: {exc}); re-download or re-create it") from None
    size = os.path.getsize(path)
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise ModelFileError(
                f"{path}: truncated GGUF: tensor '{tensor.name}' ends at byte {end} but the file has {size}; re-download or re-create it"
            )
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    if tokens_field is None:
        raise ModelFileError(f"{path}: GGUF has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    digest = hashlib.sha256()
    for index in tokens_field.data:
        digest.update(bytes(tokens_field.parts[index]))
        digest.update(b"\x00")
    arch_field = reader.fields.get("general.architecture")
    architecture = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field else "unknown"
    return GgufHeader(
        path=path,
        architecture=architecture,
        n_vocab=len(tokens_field.data),
        vocab_fingerprint=digest.hexdigest()[:16],
        file_size=size,
        n_tensors=len(reader.tensors),
    )
