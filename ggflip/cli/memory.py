"""The memory flags of `ggflip inspect` and what they add to its output: each file's `memory`
(`ggflip.gguf.memory`) at the flags' context, and with `--measure` what llama.cpp itself
allocates for that context (`ggflip.backends.measure`), which makes the compute buffer known."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ggflip.errors import ModelFileError, UsageError, check_counts
from ggflip.gguf.header import GgufHeader, header_facts
from ggflip.gguf.memory import Memory, format_bytes, header_memory, parse_kv_type


def add_memory_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that set the context `memory` is computed for."""
    memory = parser.add_argument_group("memory (weights + KV cache, by llama.cpp's rules)")
    memory.add_argument(
        "--ctx",
        type=int,
        metavar="N",
        help="context in tokens (default: the model's training context)",
    )
    memory.add_argument(
        "--kv-type",
        default="f16",
        metavar="T",
        help="KV cache type, as llama.cpp's -ctk/-ctv: f16 (default), q8_0, q4_0, ... "
        "(quantized V needs flash attention in llama.cpp)",
    )
    memory.add_argument(
        "--kv-type-v", metavar="T", help="a different type for the V cache (default: --kv-type)"
    )
    memory.add_argument(
        "--swa-full",
        action="store_true",
        help="size sliding-window layers' cache for the whole context, as llama.cpp's --swa-full",
    )
    memory.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="sequences sharing one unified cache, as llama.cpp's -np with --kv-unified "
        "(default 1)",
    )
    memory.add_argument(
        "--measure",
        action="store_true",
        help="also create the context in llama.cpp (no decode) to read its compute buffer "
        "and check the KV cache against it (loads the model)",
    )


def check_memory_flags(args: argparse.Namespace) -> None:
    """Refuse a bad --ctx/--parallel/--kv-type before any file is read; normalize the types.

    Raises:
        UsageError: naming the flag.
    """
    check_counts({"--ctx": args.ctx, "--parallel": args.parallel})
    args.kv_type = parse_kv_type(args.kv_type)
    args.kv_type_v = parse_kv_type(args.kv_type_v) if args.kv_type_v else None


def _memory(header: GgufHeader, ctx: int, args: argparse.Namespace) -> Memory:
    return header_memory(
        header,
        ctx,
        kv_type_k=args.kv_type,
        kv_type_v=args.kv_type_v,
        swa_full=args.swa_full,
        n_seq_max=args.parallel,
    )


def _measured(header: GgufHeader, memory: Memory) -> tuple[Memory, dict[str, Any]]:
    """`memory` with llama.cpp's compute buffer, and what llama.cpp logged allocating."""
    from ggflip.backends.measure import measure_context

    measured = measure_context(
        header.path,
        memory.ctx,
        kv_type_k=memory.kv_type_k,
        kv_type_v=memory.kv_type_v,
        swa_full=memory.swa_full,
        n_seq_max=memory.n_seq_max,
        n_ubatch=memory.n_ubatch,
    )
    return memory.with_compute(measured.compute_bytes), dataclasses.asdict(measured)


def facts_with_memory(header: GgufHeader, args: argparse.Namespace) -> dict[str, Any]:
    """`header_facts` plus `memory` (None, with `memory_unknown` saying why, when the file's
    KV cache cannot be sized) at the flags' context; with --measure, `llama_cpp_allocated`
    (`kv_bytes`, `compute_bytes`, `output_bytes` as llama.cpp logs them) and the compute buffer
    in `memory`."""
    facts = header_facts(header)
    ctx = args.ctx or header.context_length
    facts["memory"] = None
    if ctx is None:
        facts["memory_unknown"] = "the GGUF gives no context length; pass --ctx"
        return facts
    try:
        memory = _memory(header, ctx, args)
    except (ModelFileError, UsageError) as exc:
        facts["memory_unknown"] = str(exc)
        return facts
    if args.measure:
        memory, facts["llama_cpp_allocated"] = _measured(header, memory)
    facts["memory"] = memory.to_json()
    return facts


def memory_rows(fact: dict[str, Any]) -> list[tuple[str, str]]:
    """The human table's memory rows: the total at the context, then weights, KV, compute."""
    memory = fact["memory"]
    if memory is None:
        return [("memory", f"unknown: {fact['memory_unknown']}")]
    kv = format_bytes(memory["kv_bytes"])
    if memory["swa_cells"]:
        window = "full-size" if memory["swa_full"] else f"{memory['swa_cells']:,} cells"
        kv += f" (sliding-window layers {format_bytes(memory['kv_swa_bytes'])}, {window})"
    types = memory["kv_type_k"] + (
        f"/{memory['kv_type_v']}" if memory["kv_type_v"] != memory["kv_type_k"] else ""
    )
    allocated = fact.get("llama_cpp_allocated")
    compute = (
        f"{format_bytes(memory['compute_bytes'])} (measured by llama.cpp)"
        if allocated
        else "unknown, not in the total (--measure asks llama.cpp)"
    )
    rows = [
        ("memory", f"{format_bytes(memory['total_bytes'])} at ctx {memory['ctx']:,}"),
        ("  weights", format_bytes(memory["weights_bytes"])),
        (f"  KV cache ({types})", kv),
        ("  compute buffer", compute),
    ]
    if allocated:
        rows.append(("  llama.cpp's KV", format_bytes(allocated["kv_bytes"])))
    return rows
