"""A stand-in with a real model's architecture, tokenizer and tensor shapes, but random weights.

For speed measurements where the real weights cannot travel (a lent GPU machine without
network, a carry limit far below the F16's size): throughput depends on shapes, types and
tokenization, not on the values. Two steps:

    # where the real F16 is: keep its metadata (tokenizer included) and its tensor table
    python benchmarks/synthetic_model.py skeleton gemma-3-270m-F16.gguf skeleton.gguf
    # anywhere: write an F16 GGUF of the same shapes with random weights (norms set to 1)
    python benchmarks/synthetic_model.py build skeleton.gguf synthetic-F16.gguf

Never use such a file for accuracy, flips or KL: its answers are noise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLE_KEY = "ggflip.skeleton.tensors"


def write_skeleton(source: Path, target: Path) -> None:
    """Copy `source`'s metadata into a tensor-less GGUF, with its tensor table as a JSON key."""
    import gguf

    from ggflip.gguf.quantize import _copy_metadata

    reader = gguf.GGUFReader(source, "r")
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    writer = gguf.GGUFWriter(target, arch)
    _copy_metadata(reader, writer)
    table = [{"name": t.name, "shape": [int(d) for d in reversed(t.shape)]} for t in reader.tensors]
    writer.add_string(TABLE_KEY, json.dumps(table))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build(skeleton: Path, target: Path, seed: int = 0) -> None:
    """Write an F16 GGUF with the skeleton's metadata and random weights of its tensor shapes."""
    import gguf

    from ggflip.gguf.quantize import _copy_metadata

    reader = gguf.GGUFReader(skeleton, "r")
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    table = json.loads(bytes(reader.fields[TABLE_KEY].parts[-1]).decode())
    writer = gguf.GGUFWriter(target, arch)
    _copy_metadata(reader, writer)
    rng = np.random.default_rng(seed)
    for tensor in table:
        shape = tuple(tensor["shape"])
        if len(shape) == 1:  # norms: ones keep activations in range
            data = np.ones(shape, dtype=np.float32)
        else:
            data = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
        writer.add_tensor(tensor["name"], data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("skeleton", "build"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    (write_skeleton if args.step == "skeleton" else build)(args.source, args.target)
    print(f"wrote {args.target} ({args.target.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
