"""The memory estimate (`ggflip.gguf.memory`): KV-cache arithmetic against hand-computed sizes,
layouts read from GGUF headers, cache-type errors, and agreement with what llama.cpp itself
logs allocating (tiny GGUFs always; the real Gemma 3 270M with GGFLIP_REAL_MODEL=1)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ggflip.errors import ModelFileError, UsageError
from ggflip.gguf.header import GgufHeader, read_header
from ggflip.gguf.memory import (
    KvLayout,
    Memory,
    estimate,
    kv_layout,
    memory_or_reason,
    model_memory,
    parse_kv_type,
)
from tests.memory_probe import MIB, allocation, load_model, write_tiny_gemma3_gguf
from tests.tiny_gguf import write_tiny_gguf

REPO = Path(__file__).parents[1]
# Three layers of 2 KV heads x 32: a K or V row is 64 values (128 bytes in f16, 2 q8_0 blocks
# of 34 bytes = 68 bytes); no sliding window.
GQA = KvLayout("llama", (64,) * 3, (64,) * 3, (False,) * 3, head_k=32, head_v=32)
# Gemma-3 pattern over 7 layers: layer 5 full attention, the six others a 128-token window.
SWA = KvLayout(
    "gemma3",
    (64,) * 7,
    (64,) * 7,
    (True, True, True, True, True, False, True),
    head_k=32,
    head_v=32,
    n_swa=128,
)


def test_full_attention_cache_pads_the_context_to_256_cells() -> None:
    """ctx 1000 -> 1024 cells; 3 layers x (128 + 128) bytes a cell in f16."""
    memory = estimate(10_000, GQA, 1000)
    assert memory.kv_cells == 1024
    assert memory.kv_bytes == 3 * 1024 * 256 == 786_432
    assert memory.total_bytes == 10_000 + 786_432
    assert memory.compute_bytes is None


def test_quantized_cache_rows_are_counted_in_blocks() -> None:
    """q8_0: 64 values = 2 blocks of 34 bytes, for K and for V."""
    assert estimate(0, GQA, 1000, "q8_0").kv_bytes == 3 * 1024 * (68 + 68) == 417_792
    # K q8_0, V f16: 68 + 128 bytes a layer and cell.
    assert estimate(0, GQA, 1000, "q8_0", "f16").kv_bytes == 3 * 1024 * (68 + 128)
    # q4_0: 2 blocks of 18 bytes.
    assert estimate(0, GQA, 512, "q4_0").kv_bytes == 3 * 512 * (36 + 36)


def test_sliding_window_layers_get_a_window_sized_cache() -> None:
    """ctx 8192: the full layer holds 8192 cells; the six window layers
    pad(min(8192, 128 + 512)) = 768 cells; 256 bytes a layer and cell in f16."""
    memory = estimate(0, SWA, 8192)
    assert (memory.kv_cells, memory.swa_cells) == (8192, 768)
    assert memory.kv_swa_bytes == 6 * 768 * 256 == 1_179_648
    assert memory.kv_bytes == 8192 * 256 + 1_179_648 == 3_276_800


def test_swa_full_and_parallel_sequences_widen_the_window_cache() -> None:
    assert estimate(0, SWA, 8192, swa_full=True).kv_bytes == 7 * 8192 * 256
    # 8 unified sequences: 128 * 8 + 512 = 1536 cells (already a multiple of 256).
    assert estimate(0, SWA, 8192, n_seq_max=8).swa_cells == 1536
    # A context shorter than the window: the window cache is the context's size.
    assert estimate(0, SWA, 300).swa_cells == 512
    # n_ubatch above the context is capped at the padded context: 128 + 512 -> 768 cells.
    assert estimate(0, SWA, 512, n_ubatch=2048).swa_cells == 512


def test_split_cache_gives_each_sequence_its_padded_share() -> None:
    """Not unified, 4 sequences at ctx 1000: 1024 / 4 = 256 cells in each of 4 streams."""
    memory = estimate(0, GQA, 1000, n_seq_max=4, kv_unified=False)
    assert memory.kv_cells == 256
    assert memory.kv_bytes == 4 * 256 * 3 * 256


def test_parse_kv_type_accepts_llama_names_and_refuses_others() -> None:
    assert parse_kv_type("Q8_0") == "q8_0"
    assert parse_kv_type(" iq4_nl ") == "iq4_nl"
    with pytest.raises(UsageError, match=r"unknown KV cache type 'q8'.*did you mean 'q8_0'"):
        parse_kv_type("q8")
    with pytest.raises(UsageError, match="unknown KV cache type 'q4_k'"):
        estimate(0, GQA, 512, "q4_k")


def test_a_block_that_does_not_divide_the_head_size_is_refused() -> None:
    narrow = KvLayout("llama", (32,) * 2, (32,) * 2, (False,) * 2, head_k=16, head_v=16)
    with pytest.raises(UsageError, match="K cache type q8_0 .* head size 16"):
        estimate(0, narrow, 512, "q8_0")
    assert estimate(0, narrow, 512, "f16").kv_bytes == 2 * 512 * 128


def test_an_unknown_layout_is_refused_with_its_reason() -> None:
    unknown = KvLayout("mamba", unknown_reason="architecture 'mamba' keeps a recurrent state")
    with pytest.raises(ModelFileError, match="recurrent state"):
        estimate(0, unknown, 512)


def _header(arch: str, **hparams: object) -> GgufHeader:
    return GgufHeader(
        path=Path("x.gguf"),
        architecture=arch,
        n_vocab=10,
        vocab_fingerprint="0",
        file_size=0,
        n_tensors=0,
        hparams={f"{arch}.{key.replace('__', '.')}": v for key, v in hparams.items()},
    )


def test_layout_from_header_keys() -> None:
    """Per-layer KV heads, explicit head sizes, and an explicit per-layer window pattern."""
    header = _header(
        "somearch",
        block_count=3,
        embedding_length=64,
        attention__head_count=4,
        attention__head_count_kv=[2, 1, 0],
        attention__key_length=32,
        attention__value_length=16,
        attention__sliding_window=64,
        attention__sliding_window_pattern=[True, False, True],
    )
    layout = kv_layout(header)
    assert layout.n_embd_k_gqa == (64, 32, 0)
    assert layout.n_embd_v_gqa == (32, 16, 0)
    assert layout.swa_layers == (True, False, True)
    # ctx 4096: layer 0 a window of pad(min(4096, 64 + 512)) = 768 cells, layer 1 4096 cells,
    # layer 2 caches nothing; f16 rows 2 bytes a value.
    assert estimate(0, layout, 4096).kv_bytes == 768 * (64 + 32) * 2 + 4096 * (32 + 16) * 2


def test_layouts_that_cannot_be_sized_say_why() -> None:
    assert "no gemma3.block_count" in str(kv_layout(_header("gemma3")).unknown_reason)
    swa = kv_layout(
        _header(
            "mystery",
            block_count=2,
            embedding_length=8,
            attention__head_count=2,
            attention__sliding_window=16,
        )
    )
    assert "layer pattern" in str(swa.unknown_reason)
    chunked = kv_layout(
        _header("llama4", block_count=2, embedding_length=8, attention__head_count=2)
    )
    assert "chunked" in str(chunked.unknown_reason)
    ssm = kv_layout(_header("mamba", block_count=2, embedding_length=8, ssm__state_size=16))
    assert "recurrent" in str(ssm.unknown_reason)
    entry, reason = memory_or_reason(_header("gemma3"), 512)
    assert entry is None and "block_count" in str(reason)


def test_layout_json_round_trip_and_memory_keys() -> None:
    assert KvLayout.from_json(json.loads(json.dumps(SWA.to_json()))) == SWA
    data = estimate(5, SWA, 512).to_json()
    contract = {"weights_bytes", "kv_bytes", "compute_bytes", "total_bytes", "ctx", "kv_type_k"}
    assert contract | {"kv_type_v", "swa_full", "layout"} <= set(data)
    assert isinstance(estimate(5, SWA, 512), Memory)


def test_tiny_files_layouts_and_weights(tmp_path: Path) -> None:
    llama = write_tiny_gguf(tmp_path / "l.gguf", n_embd=128, n_layer=3, dtype="f16")
    layout = kv_layout(read_header(llama))
    assert (layout.n_embd_k_gqa, layout.swa_layers, layout.head_k) == ((64,) * 3, (False,) * 3, 32)
    gemma = write_tiny_gemma3_gguf(tmp_path / "g.gguf", n_embd=128, n_layer=7, window=128)
    assert kv_layout(read_header(gemma)) == dataclasses.replace(SWA, n_ctx_train=256)
    # Weights: 468 x 128 embedding + 7 blocks, f16 matrices and f32 norms, by hand.
    # A block: q, k, v, output and three 128x256 FFN matrices; four norms of 128 and two of 32.
    block = 2 * (128 * 128 + 64 * 128 * 2 + 128 * 128 + 3 * 256 * 128) + 4 * (4 * 128 + 2 * 32)
    assert model_memory(gemma, 512).weights_bytes == 2 * 468 * 128 + 4 * 128 + 7 * block


def _agrees(path: Path, model: object, ctx: int, kv: str, **settings: object) -> None:
    """llama.cpp's logged caches (cells exactly, MiB to its two decimals) equal the estimate."""
    header = read_header(path)
    logged = allocation(model, ctx, kv, flash_attn=kv != "f16", **settings)  # type: ignore[arg-type]
    memory = estimate(header.tensor_bytes, kv_layout(header), ctx, kv, **settings)  # type: ignore[arg-type]
    cells = [memory.kv_cells] + ([memory.swa_cells] if memory.swa_cells else [])
    parts = [memory.kv_bytes - memory.kv_swa_bytes] + (
        [memory.kv_swa_bytes] if memory.swa_cells else []
    )
    assert [c for _, c, _ in logged.kv_caches] == cells
    assert [mib for mib, _, _ in logged.kv_caches] == [round(b / MIB, 2) for b in parts]
    assert memory.kv_bytes == pytest.approx(logged.kv_bytes, rel=0.02)


@pytest.mark.parametrize("ctx", [1000, 8192])
@pytest.mark.parametrize("kv", ["f16", "q8_0"])
def test_tiny_files_match_llama_cpp_allocation(tmp_path: Path, ctx: int, kv: str) -> None:
    import llama_cpp

    for path in (
        write_tiny_gguf(tmp_path / "l.gguf", n_embd=128, n_layer=3, dtype="f16"),
        write_tiny_gemma3_gguf(tmp_path / "g.gguf", n_embd=128, n_layer=7),
    ):
        model, model_mib = load_model(path)
        try:
            assert model_mib == round(read_header(path).tensor_bytes / MIB, 2)
            _agrees(path, model, ctx, kv, swa_full=False)
            _agrees(path, model, ctx, kv, swa_full=True, n_seq_max=8)
        finally:
            llama_cpp.llama_model_free(model)


@pytest.mark.real_model
@pytest.mark.parametrize("kind", ["F16", "Q8_0"])
def test_gemma_270m_matches_llama_cpp_allocation(kind: str) -> None:
    """Gemma 3 270M (15 of 18 layers over a 512-token window) at ctx 512 and 8192, f16 and q8_0
    KV, window-sized and full-size sliding-window cache: within 2 % of llama.cpp's own log."""
    import llama_cpp

    from ggflip.config.models_toml import load_models_toml

    demo = load_models_toml(REPO / "models.toml").get_set("gemma-270m")
    paths = {"F16": demo.baseline.path} | {q.label.split()[0]: q.path for q in demo.quants}
    model, model_mib = load_model(paths[kind])
    try:
        assert model_mib == round(read_header(paths[kind]).tensor_bytes / MIB, 2)
        for ctx in (512, 8192):
            for kv in ("f16", "q8_0"):
                for swa_full in (False, True):
                    _agrees(paths[kind], model, ctx, kv, swa_full=swa_full)
    finally:
        llama_cpp.llama_model_free(model)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from ggflip.cli.main import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_json_gives_memory_at_the_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """3 layers x 1024 cells x 2 x 68 bytes (q8_0) = 417,792 bytes of KV at ctx 1000."""
    path = write_tiny_gguf(tmp_path / "l.gguf", n_embd=128, n_layer=3, dtype="f16")
    code, out, err = _cli(
        capsys, "inspect", str(path), "--ctx", "1000", "--kv-type", "Q8_0", "--json"
    )
    assert code == 0, err
    memory = json.loads(out)["memory"]
    assert (memory["ctx"], memory["kv_type_k"], memory["kv_bytes"]) == (1000, "q8_0", 417_792)
    assert memory["total_bytes"] == read_header(path).tensor_bytes + 417_792
    assert memory["compute_bytes"] is None and memory["swa_full"] is False
    # Without --ctx: the training context (256 cells for the tiny model), f16.
    code, out, _ = _cli(capsys, "inspect", str(path), "--json")
    assert json.loads(out)["memory"]["kv_bytes"] == 3 * 256 * 256
    code, out, _ = _cli(capsys, "inspect", str(path), "--ctx", "1000")
    assert code == 0 and "768.0 KiB" in out and "compute buffer" in out


def test_inspect_refuses_a_bad_kv_type_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tiny_gguf(tmp_path / "l.gguf", n_embd=128, n_layer=3, dtype="f16")
    code, out, err = _cli(capsys, "inspect", str(path), "--kv-type", "q8")
    assert code == 2 and out == "" and err.count("\n") == 1 and "did you mean 'q8_0'" in err
    code, out, err = _cli(capsys, "inspect", str(path), "--ctx", "0")
    assert code == 2 and "--ctx must be positive" in err


def test_inspect_names_why_memory_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A quantized cache whose block does not divide the head size (8): memory null, reason."""
    path = write_tiny_gguf(tmp_path / "l.gguf")
    code, out, _ = _cli(capsys, "inspect", str(path), "--kv-type", "q8_0", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["memory"] is None and "head size 8" in facts["memory_unknown"]


def test_split_file_weights_count_every_part(tmp_path: Path) -> None:
    from tests.split_gguf import write_split

    whole = write_tiny_gguf(tmp_path / "whole.gguf", n_embd=128, n_layer=3, dtype="f16")
    parts = write_split(whole, tmp_path, "tiny", max_tensors=8)
    assert len(parts) == 4  # 3 blocks x 9 tensors + 3 others, 8 a part
    split, single = model_memory(parts[0], 512), model_memory(whole, 512)
    assert split.weights_bytes == single.weights_bytes == read_header(whole).tensor_bytes
    assert split.kv_bytes == single.kv_bytes == 3 * 512 * 256


def test_inspect_measure_adds_llama_cpps_compute_buffer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--measure: llama.cpp's own KV (to its 0.01 MiB a cache) agrees, and its compute buffer
    joins the total."""
    path = write_tiny_gemma3_gguf(tmp_path / "g.gguf", n_embd=128, n_layer=7)
    code, out, err = _cli(capsys, "inspect", str(path), "--ctx", "1000", "--measure", "--json")
    assert code == 0, err
    facts = json.loads(out)
    memory, allocated = facts["memory"], facts["llama_cpp_allocated"]
    assert abs(allocated["kv_bytes"] - memory["kv_bytes"]) <= 2 * 0.005 * MIB
    assert memory["compute_bytes"] == allocated["compute_bytes"] > 0
    assert memory["total_bytes"] == (
        memory["weights_bytes"] + memory["kv_bytes"] + memory["compute_bytes"]
    )
    code, out, _ = _cli(capsys, "inspect", str(path), "--ctx", "1000", "--measure")
    assert code == 0 and "(measured by llama.cpp)" in out
