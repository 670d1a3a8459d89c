"""Write a GGUF as a split GGUF (`NAME-00001-of-0000N.gguf`) the way gguf-split lays it out."""

from __future__ import annotations

from pathlib import Path

from gguf import GGUFReader, GGUFWriter


def write_split(source: Path, directory: Path, stem: str, max_tensors: int) -> list[Path]:
    """Copy `source` into parts of at most `max_tensors` tensors each; returns the parts in
    order."""
    from ggflip.gguf.quantize import GGML_FTYPE_MOSTLY_F16, copy_metadata

    reader = GGUFReader(source)
    arch = reader.get_field("general.architecture").contents()
    writer = GGUFWriter(directory / f"{stem}.gguf", arch=arch, split_max_tensors=max_tensors)
    copy_metadata(reader, writer, GGML_FTYPE_MOSTLY_F16, ("quantize.",))
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(directory.glob(f"{stem}-*-of-*.gguf"))
