"""ggflip's memory estimate against what llama.cpp itself allocates.

For each model (Gemma 3 270M F16 and Q8_0 from ~/.cache/ggflip/models/gemma-3-270m, and tiny
GGUFs of other layouts written to a temporary folder: a llama one with GQA and no sliding
window, a Gemma-3 one with a 128-token window) and each setting (ctx 512, 8192, 32768; KV f16
with flash attention off and on, q8_0 with it on; the sliding-window cache window-sized and
full-size; 1 sequence as llama-cli runs, 8 unified as ggflip's own runs), this creates one
llama.cpp context (no decode), reads llama.cpp's log (`llama_kv_cache: size = ...`, the cells
of each cache, the model, compute and output buffers) and prints ggflip's estimate beside it:

    python benchmarks/memory_check.py [--out benchmarks/results/memory_check.json]

llama.cpp prints MiB with two decimals, so the check is twofold: the cells of every cache
equal, and ggflip's bytes, rounded the same way, print the same MiB (`same`); the ratio
estimate/logged is shown too. The compute buffer is recorded, not estimated (docs/memory.md).
Run it alone and niced: each context is cheap but the F16 model is half a GiB.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ggflip.gguf.header import read_header  # noqa: E402
from ggflip.gguf.memory import estimate, kv_layout  # noqa: E402
from tests.memory_probe import MIB, allocation, load_model, write_tiny_gemma3_gguf  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402

GEMMA = Path.home() / ".cache/ggflip/models/gemma-3-270m"
CONTEXTS = (512, 8192, 32768)
KV_SETTINGS = (("f16", False), ("f16", True), ("q8_0", True))
SEQUENCES = (1, 8)


def _models(folder: Path) -> list[Path]:
    tiny = [
        write_tiny_gguf(folder / "tiny-llama-gqa.gguf", n_embd=128, n_layer=3, dtype="f16"),
        write_tiny_gemma3_gguf(folder / "tiny-gemma3-swa128.gguf", n_embd=128, n_layer=7),
    ]
    gemma = [GEMMA / f"gemma-3-270m-{kind}.gguf" for kind in ("F16", "Q8_0")]
    return [path for path in gemma if path.exists()] + tiny


def _row(path: Path, model: Any, ctx: int, kv: str, fa: bool, swa_full: bool, n_seq: int) -> dict:
    header = read_header(path)
    logged = allocation(
        model, ctx, kv, flash_attn=fa, swa_full=swa_full, n_seq_max=n_seq, kv_unified=True
    )
    memory = estimate(
        header.tensor_bytes, kv_layout(header), ctx, kv, swa_full=swa_full, n_seq_max=n_seq
    )
    parts = [memory.kv_bytes - memory.kv_swa_bytes] + (
        [memory.kv_swa_bytes] if memory.swa_cells else []
    )
    cells = [memory.kv_cells] + ([memory.swa_cells] if memory.swa_cells else [])
    logged_cells = [c for _, c, _ in logged.kv_caches]
    same = cells == logged_cells and [round(b / MIB, 2) for b in parts] == [
        mib for mib, _, _ in logged.kv_caches
    ]
    return {
        "model": path.name,
        "ctx": ctx,
        "kv_type": kv,
        "flash_attn": fa,
        "swa_full": swa_full,
        "n_seq_max": n_seq,
        "logged_kv_mib": [mib for mib, _, _ in logged.kv_caches],
        "logged_cells": logged_cells,
        "estimate_kv_bytes": memory.kv_bytes,
        "estimate_cells": cells,
        "kv_ratio": memory.kv_bytes / logged.kv_bytes,
        "same": same,
        "compute_mib": logged.compute_mib,
        "output_mib": logged.output_mib,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/memory_check.json")
    args = parser.parse_args()
    rows, weights = [], []
    with tempfile.TemporaryDirectory() as folder:
        for path in _models(Path(folder)):
            model, model_mib = load_model(path)
            tensor_bytes = read_header(path).tensor_bytes
            weights.append(
                {"model": path.name, "logged_mib": model_mib, "tensor_bytes": tensor_bytes}
            )
            print(
                f"{path.name}: model buffer {model_mib} MiB, tensor data "
                f"{tensor_bytes / MIB:.2f} MiB"
            )
            for ctx in CONTEXTS:
                for kv, fa in KV_SETTINGS:
                    for swa_full in (False, True):
                        for n_seq in SEQUENCES:
                            row = _row(path, model, ctx, kv, fa, swa_full, n_seq)
                            rows.append(row)
                            print(
                                f"  ctx {ctx:>5} {kv:<4} fa {int(fa)} swa_full {int(swa_full)} "
                                f"seq {n_seq}: llama.cpp {row['logged_kv_mib']} MiB "
                                f"{row['logged_cells']} cells; ggflip {row['estimate_cells']} "
                                f"cells, ratio {row['kv_ratio']:.4f} same={row['same']}; "
                                f"compute {row['compute_mib']} MiB"
                            )
            import llama_cpp

            llama_cpp.llama_model_free(model)
    worst = max(abs(r["kv_ratio"] - 1) for r in rows)
    print(
        f"{len(rows)} contexts; all same: {all(r['same'] for r in rows)}; worst |ratio-1| "
        f"{worst:.4f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"weights": weights, "contexts": rows}, indent=1) + "\n")
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
