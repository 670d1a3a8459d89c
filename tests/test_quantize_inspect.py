"""`ggflip quantize` and `ggflip inspect` on tiny GGUFs: llama.cpp's quantizer, imatrix, file facts,
splits."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from ggflip.cli.main import main
from ggflip.config.models_toml import load_models_toml
from ggflip.errors import ExitCode, ModelFileError, UsageError
from ggflip.gguf.header import file_identity, read_header, scan_gguf, split_parts
from ggflip.gguf.imatrix import load_imatrix
from ggflip.gguf.quantize import quantize, quantized_name
from tests.split_gguf import write_split


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _weights(path: Path) -> dict[str, int]:
    """Name -> row width (ne0) of every 2-D tensor, read with the gguf package."""
    return {t.name: int(t.shape[0]) for t in gguf.GGUFReader(path).tensors if len(t.shape) == 2}


def write_gguf_imatrix(
    path: Path, rows: dict[str, np.ndarray], counts: dict[str, np.ndarray]
) -> Path:
    """An imatrix in llama.cpp's GGUF layout: NAME.in_sum2 and NAME.counts per weight, plus
    metadata."""
    writer = gguf.GGUFWriter(path, arch="imatrix")
    writer.add_array("imatrix.datasets", ["unit-test.txt"])
    writer.add_uint32("imatrix.chunk_count", 7)
    writer.add_uint32("imatrix.chunk_size", 64)
    for name, sums in rows.items():
        writer.add_tensor(f"{name}.in_sum2", sums.astype(np.float32))
        writer.add_tensor(f"{name}.counts", counts[name].astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_read_header_facts_match_the_gguf_package(tiny_gguf_dir: Path) -> None:
    path = tiny_gguf_dir / "q4_0.gguf"
    header = read_header(path)
    reader = gguf.GGUFReader(path)
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    n_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    assert header.n_params == n_params
    assert header.bits_per_weight == pytest.approx(8 * n_bytes / n_params)
    assert header.file_type == "Q4_0"
    assert header.tensor_types == {"Q4_0": 15, "F32": 5, "Q8_0": 1}
    assert sum(header.tensor_types.values()) == header.n_tensors == len(reader.tensors)
    assert header.context_length == int(reader.get_field("llama.context_length").contents())
    assert header.has_chat_template is False
    assert header.parts == (path,)


def test_quantize_makes_the_type_and_counts_tensors(tiny_gguf_dir: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    dst = tmp_path / "q8.gguf"
    quantize(
        tiny_gguf_dir / "base_f16.gguf",
        dst,
        "Q8_0",
        n_threads=1,
        on_tensor=lambda *a: seen.append(a),
    )
    header = read_header(dst)
    assert header.file_type == "Q8_0"
    assert [done for done, _, _ in seen] == list(range(1, header.n_tensors + 1))
    assert {total for _, total, _ in seen} == {header.n_tensors}
    assert not (tmp_path / "q8.gguf.tmp").exists()


def test_unknown_type_suggests_a_name(tiny_gguf_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="did you mean Q4_K_M"):
        quantize(tiny_gguf_dir / "base_f16.gguf", tmp_path / "x.gguf", "Q4_KM")


def test_imatrix_changes_the_quantization_and_is_recorded(
    tiny_gguf_dir: Path, tmp_path: Path
) -> None:
    base = tiny_gguf_dir / "base_f16.gguf"
    rng = np.random.default_rng(0)
    widths = _weights(base)
    rows = {name: rng.uniform(0.01, 50.0, width) * 4 for name, width in widths.items()}
    path = write_gguf_imatrix(
        tmp_path / "imatrix.gguf", rows, {name: np.array([4.0]) for name in widths}
    )
    imatrix = load_imatrix(path)
    assert imatrix.datasets == ("unit-test.txt",) and imatrix.chunk_count == 7
    name = next(iter(widths))
    np.testing.assert_allclose(imatrix.entries[name], rows[name] / 4, rtol=1e-6)
    plain, weighted = tmp_path / "plain.gguf", tmp_path / "weighted.gguf"
    quantize(base, plain, "Q4_0", n_threads=1)
    quantize(base, weighted, "Q4_0", n_threads=1, imatrix=imatrix)
    assert plain.read_bytes() != weighted.read_bytes()
    fields = scan_gguf(weighted, lambda key: key.startswith("quantize.")).fields
    assert fields["quantize.imatrix.file"] == str(path).encode()
    assert fields["quantize.imatrix.entries_count"] == len(widths)
    assert fields["quantize.imatrix.chunks_count"] == 7


def test_imatrix_per_expert_counts_and_legacy_format(tmp_path: Path) -> None:
    sums = np.array([2.0, 4.0, 6.0, 8.0, 5.0, 5.0])
    path = write_gguf_imatrix(tmp_path / "moe.gguf", {"w": sums}, {"w": np.array([2.0, 1.0, 0.0])})
    np.testing.assert_allclose(load_imatrix(path).entries["w"], [1.0, 2.0, 6.0, 8.0, 1.0, 1.0])
    legacy = tmp_path / "legacy.dat"
    name = b"blk.0.ffn_up.weight"
    values = np.array([3.0, 6.0, 9.0], dtype="<f4")
    legacy.write_bytes(
        struct.pack("<i", 1)
        + struct.pack("<i", len(name))
        + name
        + struct.pack("<ii", 3, 3)
        + values.tobytes()
        + struct.pack("<ii", 12, 4)
        + b"wiki"
    )
    loaded = load_imatrix(legacy)
    np.testing.assert_allclose(loaded.entries["blk.0.ffn_up.weight"], [1.0, 2.0, 3.0])
    assert loaded.datasets == ("wiki",) and loaded.chunk_count == 12
    (tmp_path / "junk.dat").write_bytes(b"\x00\x00\x00\x00")
    with pytest.raises(ModelFileError, match="not an imatrix file"):
        load_imatrix(tmp_path / "junk.dat")


def test_quantize_command_adds_a_set_and_keeps_the_file(
    tiny_gguf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models.toml"
    original = "# my comment stays\n[llama]\nn_threads = 1\n"
    models.write_text(original)
    out = tmp_path / "quants"
    code, stdout, err = _run(
        capsys,
        "quantize",
        str(tiny_gguf_dir / "base_f16.gguf"),
        "--types",
        "Q8_0,Q4_0",
        "--out",
        str(out),
        "--models",
        str(models),
        "--set",
        "tiny",
        "--threads",
        "1",
        "--json",
    )
    assert code == ExitCode.OK, err
    document = json.loads(stdout)
    assert [q["type"] for q in document["quants"]] == ["Q8_0", "Q4_0"]
    assert document["quants"][0]["bits_per_weight"] > document["quants"][1]["bits_per_weight"]
    assert models.read_text().startswith(original)
    tiny = load_models_toml(models).get_set("tiny")
    assert [(q.label, q.path) for q in tiny.quants] == [
        ("Q8_0", out / "base-Q8_0.gguf"),
        ("Q4_0", out / "base-Q4_0.gguf"),
    ]
    assert tiny.baseline.path == tiny_gguf_dir / "base_f16.gguf"
    assert f"added Q8_0, Q4_0 to set 'tiny' in {models}" in err
    code, _, err = _run(
        capsys,
        "quantize",
        str(tiny_gguf_dir / "base_f16.gguf"),
        "--types",
        "Q4_0",
        "--out",
        str(out),
        "--models",
        str(models),
        "--set",
        "tiny",
    )
    assert code == ExitCode.OK
    assert len(load_models_toml(models).get_set("tiny").quants) == 2
    assert f"set 'tiny' in {models} already lists them; nothing added" in err
    assert "base-Q4_0.gguf exists, kept" in err  # not a bar stuck at 0/?


def test_quantize_says_when_it_creates_the_models_file(
    tiny_gguf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models.toml"
    base = tiny_gguf_dir / "base_f16.gguf"
    args = ("quantize", str(base), "--types", "Q8_0", "--out", str(tmp_path), "--threads", "1")
    code, _, err = _run(capsys, *args, "--models", str(models), "--set", "tiny")
    assert code == ExitCode.OK, err
    assert f"created {models} with set 'tiny' (1 quants)" in err
    assert [q.label for q in load_models_toml(models).get_set("tiny").quants] == ["Q8_0"]


def test_inspect_piped_keeps_each_path_on_one_line(
    tiny_gguf_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written to a pipe, the output is 200 columns wide: a long path is never folded."""
    monkeypatch.delenv("COLUMNS", raising=False)
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "tiny-model-with-a-long-name.gguf"
    deep.parent.mkdir(parents=True)
    shutil.copy(tiny_gguf_dir / "q8_0.gguf", deep)
    assert len(str(deep)) > 80
    code, out, _ = _run(capsys, "inspect", str(deep))
    assert code == ExitCode.OK
    assert str(deep) in out.splitlines()


def test_quantized_names() -> None:
    assert quantized_name(Path("gemma-3-270m-F16.gguf"), "Q4_0") == "gemma-3-270m-Q4_0.gguf"
    assert quantized_name(Path("big-bf16-00001-of-00003.gguf"), "Q8_0") == "big-Q8_0.gguf"
    assert quantized_name(Path("model.gguf"), "Q2_K") == "model-Q2_K.gguf"


def test_inspect_json_keys(tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "inspect", str(tiny_gguf_dir / "q8_0.gguf"), "--json")
    assert code == ExitCode.OK
    facts = json.loads(out)
    assert (
        facts["file_type"] == "Q8_0"
        and facts["n_vocab"] == read_header(tiny_gguf_dir / "q8_0.gguf").n_vocab
    )
    assert 8.0 < facts["bits_per_weight"] < 9.0
    assert facts["n_params"] == read_header(tiny_gguf_dir / "base.gguf").n_params
    code, out, _ = _run(
        capsys,
        "inspect",
        str(tiny_gguf_dir / "q8_0.gguf"),
        str(tiny_gguf_dir / "base.gguf"),
        "--json",
    )
    assert [f["file_type"] for f in json.loads(out)] == ["Q8_0", "ALL_F32"]


def test_inspect_truncated_is_one_line_error(
    tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "inspect", str(tiny_gguf_dir / "truncated.gguf"))
    assert code == ExitCode.MODEL and out == "" and "truncated GGUF" in err and err.count("\n") == 1


def test_split_gguf_counts_every_part(tiny_gguf_dir: Path, tmp_path: Path) -> None:
    parts = write_split(tiny_gguf_dir / "base_f16.gguf", tmp_path, "tiny", max_tensors=8)
    assert len(parts) == 3 and split_parts(parts[0]) == tuple(parts)
    header, whole = read_header(parts[0]), read_header(tiny_gguf_dir / "base_f16.gguf")
    assert (header.n_params, header.n_tensors, header.vocab_fingerprint) == (
        whole.n_params,
        whole.n_tensors,
        whole.vocab_fingerprint,
    )
    assert header.file_size == sum(p.stat().st_size for p in parts)
    identity = file_identity(parts[0])
    parts[2].write_bytes(
        parts[2].read_bytes()
    )  # rewriting a later part changes the model's identity
    assert file_identity(parts[0]) != identity
    parts[1].unlink()
    with pytest.raises(ModelFileError, match="split GGUF part missing"):
        read_header(parts[0])


def test_parameter_count(tiny_gguf_dir: Path) -> None:
    from ggflip.gguf.header import parameter_count

    expected = sum(int(t.n_elements) for t in gguf.GGUFReader(tiny_gguf_dir / "q4_0.gguf").tensors)
    assert (
        parameter_count(tiny_gguf_dir / "q4_0.gguf")
        == expected
        == parameter_count(tiny_gguf_dir / "base.gguf")
    )
