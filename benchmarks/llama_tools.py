"""llama.cpp's own tools, built from the sources the installed llama-cpp-python vendors: the one
place the benchmarks download the sdist, configure CMake and build targets.

The sdist comes from `pip download --no-deps --no-binary :all: llama-cpp-python==<installed>`
(or an unpacked one given as `src`); CMake runs on its `vendor/llama.cpp` with the flags below
plus whatever `CMAKE_ARGS` holds (e.g. `-DGGML_CUDA=on`, as for llama-cpp-python itself). A
build folder that already holds a target's binary is reused as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

BASE_CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
)
# What the results record of a build, read back from its CMakeCache.txt.
RECORDED_CACHE_KEYS = (
    "CMAKE_HOME_DIRECTORY",
    "CMAKE_BUILD_TYPE",
    "BUILD_SHARED_LIBS",
    "GGML_NATIVE",
    "GGML_CUDA",
    "CMAKE_CUDA_ARCHITECTURES",
    "CMAKE_CUDA_COMPILER",
    "GGML_CUDA_FA",
    "GGML_CUDA_GRAPHS",
    "GGML_BLAS",
    "GGML_OPENMP",
)


def installed_version() -> str:
    return version("llama_cpp_python")


def unpacked_sdist(into: Path, wanted: str | None = None, python: Path | None = None) -> Path:
    """The unpacked llama-cpp-python sdist of version `wanted` (default: the installed one) under
    `into`, downloaded from PyPI by `python`'s pip (default this one's) and unpacked when it is
    not there yet."""
    wanted = wanted or installed_version()
    unpacked = into / f"llama_cpp_python-{wanted}"
    if (unpacked / "vendor" / "llama.cpp").is_dir():
        return unpacked
    into.mkdir(parents=True, exist_ok=True)
    print(f"downloading the llama-cpp-python=={wanted} sdist ...", file=sys.stderr)
    subprocess.run(
        [str(python or sys.executable), "-m", "pip", "download", "--no-deps", "--no-binary",
         ":all:", f"llama-cpp-python=={wanted}", "-d", str(into)],
        check=True,
    )  # fmt: skip
    with tarfile.open(into / f"llama_cpp_python-{wanted}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    return unpacked


def llama_source(src: Path) -> Path:
    """The llama.cpp tree of `src`: an unpacked sdist's `vendor/llama.cpp`, or `src` itself."""
    vendored = src / "vendor" / "llama.cpp"
    return vendored if vendored.is_dir() else src


def configure(source: Path, build: Path, extra: Sequence[str] = ()) -> None:
    """CMake-configure `source` into `build` (Release, no curl/tests/examples/server, then
    `CMAKE_ARGS` from the environment, then `extra`)."""
    subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build), *BASE_CMAKE_FLAGS,
         *os.environ.get("CMAKE_ARGS", "").split(), *extra],
        check=True,
    )  # fmt: skip


def build_targets(build: Path, targets: Sequence[str], jobs: int | None = None) -> None:
    """Build `targets` in the configured folder `build` (`jobs` compilers, default every core)."""
    jobs = jobs or os.cpu_count() or 2
    command = ["cmake", "--build", str(build), "--target", *targets, "-j", str(jobs)]
    subprocess.run(command, check=True)


def ensure_tools(
    build: Path, targets: Sequence[str], src: Path | None, download_into: Path
) -> Path:
    """The `bin` folder of `build` holding every one of `targets`, building the missing ones:
    configuring first when `build` is not configured yet, from `src` or else from the sdist
    downloaded into `download_into`."""
    binaries = build / "bin"
    missing = [t for t in targets if not (binaries / t).exists()]
    if not missing:
        return binaries
    if not (build / "CMakeCache.txt").exists():
        source = llama_source(src if src is not None else unpacked_sdist(download_into))
        print(f"building {', '.join(missing)} from {source} (minutes) ...", file=sys.stderr)
        configure(source, build)
    build_targets(build, missing)
    return binaries


def build_flags(build: Path) -> dict[str, str]:
    """The recorded CMake cache entries (`RECORDED_CACHE_KEYS`) of the build folder `build`;
    empty when it has no CMakeCache.txt (a binary given by path)."""
    cache = build / "CMakeCache.txt"
    if not cache.exists():
        return {}
    flags = {}
    for line in cache.read_text(errors="replace").splitlines():
        name, sep, value = line.partition("=")
        key = name.split(":")[0]
        if sep and key in RECORDED_CACHE_KEYS:
            flags[key] = value
    return flags


def llama_bench_pp512(
    binary: Path, model: Path, threads: int, n_gpu_layers: int, repetitions: int = 3
) -> float:
    """llama-bench's mean prompt-processing tokens/s over 512-token prompts (flash attention off,
    as ggflip's default)."""
    out = subprocess.run(
        [str(binary), "-m", str(model), "-p", "512", "-n", "0", "-t", str(threads),
         "-r", str(repetitions), "-ngl", str(n_gpu_layers), "-fa", "0", "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return float(json.loads(out)[0]["avg_ts"])


def batched_bench(
    binary: Path,
    model: Path,
    threads: int,
    n_gpu_layers: int,
    shape: tuple[int, int, int],
    n_ctx: int,
) -> dict[str, float] | None:
    """llama-batched-bench's JSON line for `shape` = (prompt tokens, generated tokens, parallel
    sequences), flash attention off as ggflip's default: t_pp/speed_pp (the prompts' prefill),
    t_tg/speed_tg (the generation steps), t/speed (both); None when it printed no such line."""
    prompt_tokens, new_tokens, sequences = shape
    out = subprocess.run(
        [str(binary), "-m", str(model), "-t", str(threads), "-ngl", str(n_gpu_layers),
         "-c", str(n_ctx), "-npp", str(prompt_tokens), "-ntg", str(new_tokens),
         "-npl", str(sequences), "-fa", "off", "--output-format", "jsonl"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[-1] if lines else None


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
