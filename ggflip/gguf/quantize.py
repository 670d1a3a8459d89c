"""Turn one GGUF file into another type: dequantize to F16 in Python, quantize with llama.cpp.

`dequantize_to_f16` rebuilds an F16 GGUF from a quantized one with the `gguf` package
(its output is byte-identical to llama.cpp's own requantize-to-F16); `quantize` runs
llama.cpp's `llama_model_quantize` with its log routed to the "ggflip.llama" logger.
Both write through `atomic_output`: to `<dst>.tmp` beside the target, renamed onto it
only on success, so a failed or interrupted conversion never leaves a partial file
under the final name.

`quantize_types` makes several quants of one base into a folder, named
`<base name without -F16>-<TYPE>.gguf`; it only names, orders and skips files.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ggflip.errors import DiskFullError, ModelFileError, UsageError
from ggflip.store.atomic import atomic_output

if TYPE_CHECKING:
    from ggflip.gguf.imatrix import Imatrix

logger = logging.getLogger(__name__)
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
TensorProgress = Callable[[int, int, str], None]

GGML_FTYPE_MOSTLY_F16 = 1
# Keys that describe how the source was quantized (imatrix provenance); false for the F16.
_DROPPED_KEY_PREFIXES = ("quantize.",)
# ggml types stored as plain numpy arrays, copied into the F16 file unchanged.
_UNQUANTIZED_TYPES = frozenset({"F32", "F16", "F64", "I8", "I16", "I32", "I64"})


def dequantize_to_f16(src: Path, dst: Path) -> None:
    """Write an F16 GGUF at `dst` with `src`'s metadata and tensors, quantized ones dequantized.

    Tensor order, names and shapes are kept; F32 tensors and 1-D tensors are written as
    F32, F16 ones are copied, everything else becomes F16. `general.file_type` is set to
    MOSTLY_F16 and `quantize.*` keys (imatrix provenance of the source) are dropped.

    Raises:
        ModelFileError: `src` is missing or not a readable GGUF.
        DiskFullError: the disk filled up while writing `dst`.
    """
    from gguf import GGUFWriter

    reader = open_reader(src)
    arch = reader.get_field("general.architecture")
    if arch is None:
        raise ModelFileError(f"{src} has no general.architecture key; is it a model GGUF?")
    with atomic_output(dst) as tmp:
        writer = GGUFWriter(tmp, arch=arch.contents())
        try:
            copy_metadata(reader, writer, GGML_FTYPE_MOSTLY_F16, _DROPPED_KEY_PREFIXES)
            for tensor in reader.tensors:
                writer.add_tensor(tensor.name, _to_f16_or_f32(tensor))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()


def open_reader(path: Path) -> Any:
    """Open `path` with gguf.GGUFReader, turning a missing or malformed file into ModelFileError."""
    from gguf import GGUFReader

    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        return GGUFReader(path)
    except (ValueError, KeyError, IndexError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable GGUF file: {exc}") from exc


def copy_metadata(
    reader: Any, writer: Any, file_type: int | None = None, dropped: tuple[str, ...] = ()
) -> None:
    """Copy every KV pair from `reader` to `writer` in order, but keys starting with one of
    `dropped`; `general.file_type` is set to `file_type` unless that is None (then copied)."""
    from gguf import GGUFValueType

    for field in reader.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer emits these itself
        if dropped and name.startswith(dropped):
            continue
        if name == "general.alignment":
            writer.add_custom_alignment(int(field.contents()))
        elif name == "general.file_type" and file_type is not None:
            writer.add_uint32(name, file_type)
        else:
            value, sub_type = _field_value(field)
            if field.types[0] == GGUFValueType.ARRAY and len(value) == 0:
                logger.warning("dropping empty array key %s (GGUFWriter cannot write it)", name)
                continue
            writer.add_key_value(name, value, field.types[0], sub_type=sub_type)
    if file_type is not None and reader.get_field("general.file_type") is None:
        writer.add_uint32("general.file_type", file_type)


def _field_value(field: Any) -> tuple[Any, Any]:
    """Return a reader field's value as the writer takes it, and its array item type (or None).

    Strings are passed as their raw bytes so tokens round-trip byte for byte.
    """
    from gguf import GGUFValueType

    main_type = field.types[0]
    if main_type == GGUFValueType.STRING:
        return bytes(field.parts[-1]), None
    if main_type != GGUFValueType.ARRAY:
        return field.parts[-1].tolist()[0], None
    if len(field.types) == 1 or not field.data:
        return [], None  # an empty array; the caller drops it
    if len(field.types) > 2:
        raise ModelFileError(f"metadata key {field.name} is a nested array, which is not supported")
    sub_type = field.types[-1]
    if sub_type == GGUFValueType.STRING:
        return [bytes(field.parts[i]) for i in field.data], sub_type
    return np.concatenate([field.parts[i] for i in field.data]).tolist(), sub_type


def _to_f16_or_f32(tensor: Any) -> np.ndarray:
    """Return a reader tensor's values as the F16 file stores them, in numpy (row-major) order.

    Block-quantized and BF16 tensors are dequantized to F16, or to F32 when they are 1-D
    or would overflow F16; F32, F16 and integer tensors are copied unchanged. GGUFReader's
    `data` has the reversed ggml shape, which is what GGUFWriter expects back.
    """
    from gguf import quants

    kind = tensor.tensor_type
    if kind.name in _UNQUANTIZED_TYPES:
        return np.array(tensor.data)
    values = quants.dequantize(tensor.data, kind)
    if list(reversed(values.shape)) != [int(d) for d in tensor.shape]:
        raise ModelFileError(
            f"tensor {tensor.name}: dequantized to shape {values.shape}, "
            f"expected the reverse of {list(tensor.shape)}"
        )
    if len(tensor.shape) == 1:
        return np.ascontiguousarray(values, dtype=np.float32)
    as_f16 = np.ascontiguousarray(values, dtype=np.float16)
    if not np.isfinite(as_f16).all():
        logger.warning("tensor %s overflows F16; keeping it as F32", tensor.name)
        return np.ascontiguousarray(values, dtype=np.float32)
    return as_f16


def llama_ftype(qtype: str) -> int:
    """Return llama.cpp's LLAMA_FTYPE_MOSTLY_<qtype> value; unknown names fail with "did you mean".

    Raises:
        UsageError: `qtype` names no llama.cpp file type.
    """
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    known = {
        name[len(prefix) :]: value
        for name, value in vars(llama_cpp).items()
        if name.startswith(prefix) and isinstance(value, int)
    }
    if qtype in known:
        return known[qtype]
    close = difflib.get_close_matches(qtype.upper(), known, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
    raise UsageError(f"unknown quantization type {qtype!r}{hint}")


def _check_gguf(path: Path) -> None:
    """Raise ModelFileError unless `path` is a GGUF file whose tensors all lie inside it."""
    from ggflip.gguf.header import scan_gguf

    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    layout = scan_gguf(path)
    if layout.data_end > path.stat().st_size:
        raise ModelFileError(f"{path} is truncated; re-create or re-download it")


class _TensorLines(logging.Handler):
    """Turns llama.cpp's `[  i/  n] name` quantize log lines into progress calls."""

    def __init__(self, on_tensor: TensorProgress) -> None:
        super().__init__(logging.INFO)
        self.on_tensor = on_tensor

    def emit(self, record: logging.LogRecord) -> None:
        match = _TENSOR_LINE.match(record.getMessage())
        if match:
            self.on_tensor(int(match[1]), int(match[2]), match[3])


@contextlib.contextmanager
def _tensor_progress(on_tensor: TensorProgress | None) -> Iterator[None]:
    """While quantizing, feed llama.cpp's per-tensor log lines to `on_tensor`."""
    from ggflip.llama_log import LOGGER_NAME

    if on_tensor is None:
        yield
        return
    llama_logger = logging.getLogger(LOGGER_NAME)
    handler, old_level = _TensorLines(on_tensor), llama_logger.level
    llama_logger.addHandler(handler)
    if llama_logger.getEffectiveLevel() > logging.INFO:
        llama_logger.setLevel(logging.INFO)  # the records must be created to be seen
    try:
        yield
    finally:
        llama_logger.removeHandler(handler)
        llama_logger.setLevel(old_level)


def quantize(
    src: Path,
    dst: Path,
    qtype: str,
    n_threads: int = 0,
    imatrix: Imatrix | None = None,
    on_tensor: TensorProgress | None = None,
) -> None:
    """Quantize the GGUF `src` to `qtype` ("Q4_K_M", ...) at `dst` with llama.cpp, atomically.

    llama.cpp's log goes to the "ggflip.llama" logger. `n_threads` 0 uses all cores.
    `imatrix` is handed to llama.cpp as `llama-quantize --imatrix` does; `on_tensor(done,
    total, name)` is called as each tensor is written.

    Raises:
        UsageError: `qtype` is not a llama.cpp quantization type.
        ModelFileError: `src` is missing, not a complete GGUF, or llama.cpp failed on it.
        DiskFullError: the disk filled up while writing `dst`.
    """
    import llama_cpp

    from ggflip.gguf.imatrix import ImatrixParams
    from ggflip.llama_log import flush_llama_log, install_llama_log_handler

    ftype = llama_ftype(qtype)
    _check_gguf(src)  # llama.cpp may abort the process on a malformed file
    install_llama_log_handler()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads
    matrix = ImatrixParams(imatrix) if imatrix is not None else None  # kept alive across the call
    if matrix is not None:
        params.imatrix = ctypes.cast(
            matrix.data, ctypes.POINTER(llama_cpp.llama_model_imatrix_data)
        )
        params.kv_overrides = ctypes.cast(
            matrix.kv_overrides, ctypes.POINTER(llama_cpp.llama_model_kv_override)
        )
    with atomic_output(dst) as tmp, _tensor_progress(on_tensor):
        status = llama_cpp.llama_model_quantize(
            os.fsencode(src), os.fsencode(tmp), ctypes.byref(params)
        )
        flush_llama_log()
        if status != 0:
            if shutil.disk_usage(dst.parent).free < src.stat().st_size:
                raise DiskFullError(f"no space left on the device while writing {dst}")
            raise ModelFileError(
                f"llama.cpp failed to quantize {src} to {qtype} (status {status}); "
                "run with -v to see its log"
            )


_BASE_SUFFIX = re.compile(r"[-_.](F16|BF16|F32|f16|bf16|f32)$")


@dataclass(frozen=True)
class QuantizedFile:
    """One file `quantize_types` made (or found already made)."""

    qtype: str
    path: Path
    seconds: float


def quantized_name(base: Path, qtype: str) -> str:
    """The file name of `base`'s `qtype` quant: `gemma-3-270m-F16.gguf` ->
    `gemma-3-270m-Q4_0.gguf`."""
    stem = base.name.removesuffix(".gguf")
    split = re.match(r"^(.*)-\d{5}-of-\d{5}$", stem)
    stem = _BASE_SUFFIX.sub("", split[1] if split else stem)
    return f"{stem}-{qtype}.gguf"


def quantize_types(
    base: Path,
    types: Sequence[str],
    out_dir: Path,
    n_threads: int = 0,
    imatrix: Imatrix | None = None,
    on_start: Callable[[str, Path], None] | None = None,
    on_tensor: TensorProgress | None = None,
    overwrite: bool = False,
) -> list[QuantizedFile]:
    """Make `base`'s quants of every type in `out_dir`; existing files are kept unless `overwrite`.

    Raises:
        UsageError: an unknown type, or `out_dir` is not a folder.
        ModelFileError, DiskFullError: as `quantize`.
    """
    for qtype in types:
        llama_ftype(qtype)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for qtype in types:
        dst = out_dir / quantized_name(base, qtype)
        if dst.resolve() == base.resolve():
            raise UsageError(
                f"{dst}: quantizing {qtype} would overwrite the base model; choose another --out"
            )
        if on_start:
            on_start(qtype, dst)
        started = time.perf_counter()
        if overwrite or not dst.exists():
            quantize(base, dst, qtype, n_threads=n_threads, imatrix=imatrix, on_tensor=on_tensor)
        made.append(QuantizedFile(qtype, dst, time.perf_counter() - started))
    return made
