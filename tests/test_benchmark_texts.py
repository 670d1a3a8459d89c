"""The llama-perplexity benchmarks say which text each side read: its sha256 and token count as
ggflip reports them, and a warning when two files under one name differ."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ggflip.cli.main import main

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "kld_vs_llama_perplexity.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kld_vs_llama_perplexity", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ours(tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """`ggflip kld --json` on a tiny set and a 120-sentence text, as the benchmark runs it."""
    base = tiny_gguf_dir / "base.gguf"
    models = tmp_path / "models.toml"
    models.write_text(
        f'[llama]\nn_threads = 1\n[sets.tiny]\nbaseline = {{ path = "{base}", label = "F32" }}\n'
        f'quants = [ {{ path = "{tiny_gguf_dir / "noisy.gguf"}", label = "noisy" }} ]\n'
    )
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"the cat {i % 7} sat on mat {i % 11}" for i in range(120)) + "\n")
    argv = ["kld", "--models", str(models), "--text", str(text), "--ctx", "64", "--chunks", "2"]
    assert main([*argv, "--json", "--no-cache"]) == 0
    return {"report": json.loads(capsys.readouterr().out), "text": text, "base": base}


def test_the_llama_side_reads_what_ggflip_reports(bench: ModuleType, ours: dict) -> None:
    """The digest and token count recorded for llama-perplexity equal ggflip's own, for the same
    file; the digest is the file's bytes less its one trailing newline, by hand."""
    identity = bench.text_identity(ours["text"], ours["base"])
    report = ours["report"]
    by_hand = hashlib.sha256(ours["text"].read_bytes()[:-1]).hexdigest()
    assert identity["sha256"] == report["text_sha256"] == by_hand
    assert identity["tokens"] == report["n_text_tokens"] > 2 * 64
    lines = bench.text_lines(ours, {"text": identity, "chunks": (2, 64)})
    assert lines[0].startswith(f"text read by ggflip:           sha256 {by_hand[:16]}, ")
    assert lines[1].startswith(f"text read by llama-perplexity: sha256 {by_hand[:16]}, ")
    assert f"{report['n_text_tokens']} tokens, 2 chunks x 64" in lines[0]
    assert f"{identity['tokens']} tokens, 2 chunks x 64" in lines[1] and len(lines) == 2


def test_two_files_under_one_name_are_flagged(
    bench: ModuleType, ours: dict, tmp_path: Path
) -> None:
    other = tmp_path / "other" / "text.txt"
    other.parent.mkdir()
    other.write_text(ours["text"].read_text().replace("mat", "rug"))
    identity = bench.text_identity(other, ours["base"])
    lines = bench.text_lines(ours, {"text": identity, "chunks": None})
    assert "chunks not in its log" in lines[1]
    assert lines[-1] == (
        "WARNING: the two tools read different texts; their numbers do not compare"
    )
    assert bench.text_lines(ours, {})[-1].endswith("not recorded (a stored result; rerun it)")


def test_llama_chunks_reads_its_log_line(bench: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "llama-base.log"
    log.write_text(
        "perplexity: tokenizing the input ..\n"
        "perplexity: calculating perplexity over 20 chunks, n_ctx=512, batch_size=2048, n_seq=4\n"
    )
    assert bench.llama_chunks(log) == (20, 512)
    assert bench.llama_chunks(tmp_path / "absent.log") is None
