"""A quantized KV cache on the real Gemma 3 270M F16: its own file with a q8_0 and a q4_0 cache
(flash attention on for every model), as two quants of a multiple-choice run and a corpus run.

Needs `ggflip prepare-demo` and GGFLIP_REAL_MODEL=1 (scripts/test.sh).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.errors import ExitCode

pytestmark = pytest.mark.real_model
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def kv_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ggflip.config.models_toml import load_models_toml

    f16 = load_models_toml(REPO / "models.toml").get_set("gemma-270m").baseline.path
    models = tmp_path_factory.mktemp("kv") / "models.toml"
    models.write_text(
        "[llama]\nn_ctx = 1024\nflash_attn = true\n[sets.kv]\n"
        f'baseline = {{ path = "{f16}", label = "F16" }}\n'
        f'quants = [\n  {{ path = "{f16}", llama = {{ type_k = "q8_0", type_v = "q8_0" }} }},\n'
        f'  {{ path = "{f16}", llama = {{ type_k = "q4_0", type_v = "q4_0" }} }},\n]\n'
    )
    return models


def test_mmlu_kv_q8_0_and_q4_0(kv_models: Path, tmp_path: Path) -> None:
    """Both caches move the answers' distributions, q4_0 more than q8_0; each gets a verdict
    against the noise floor."""
    out = tmp_path / "r.json"
    args = ["run", "--models", str(kv_models), "--limit", "40", "--seed", "5", "--floor",
            "--cache-dir", str(tmp_path / "cache"), "--json", "--out", str(out)]  # fmt: skip
    assert main(args) == ExitCode.OK
    report = json.loads(out.read_text())
    q8, q4 = report["quants"]
    assert (q8["label"], q4["label"]) == ("F16 · KV q8_0", "F16 · KV q4_0")
    assert q8["settings"] == {"type_k": "q8_0", "type_v": "q8_0"}
    assert 0 < q8["kl_mean"] < q4["kl_mean"]
    assert {q8["verdict"], q4["verdict"]} <= {"different", "indistinguishable"}


def test_corpus_kv_q8_0_and_q4_0(kv_models: Path, tmp_path: Path) -> None:
    """On Python's standard library sources at ctx 1024, scoring every position of 2 chunks
    (2,048 rows a pass): KL > 0 for both caches, q4_0 above q8_0, and KL by position over both
    buckets."""
    text = tmp_path / "stdlib.txt"
    sources = sorted(Path("/usr/lib/python3.11").glob("*.py"))[:20]
    if not sources:
        pytest.skip("no /usr/lib/python3.11/*.py on this machine")
    text.write_text("".join(p.read_text(errors="replace") for p in sources))
    out = tmp_path / "k.json"
    args = ["kld", "--models", str(kv_models), "--text", str(text), "--ctx", "1024", "--chunks",
            "2", "--score-from", "0", "--no-cache", "--json", "--out", str(out)]  # fmt: skip
    assert main(args) == ExitCode.OK
    q8, q4 = json.loads(out.read_text())["quants"]
    assert 0 < q8["kl_mean"] < q4["kl_mean"]
    assert [b["lo"] for b in q8["by_position"]] == [0, 512]
    assert all(b["kl_mean"] > 0 for b in q8["by_position"] + q4["by_position"])
