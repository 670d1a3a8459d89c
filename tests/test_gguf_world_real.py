"""quantize, inspect and a run without models.toml on the real Gemma 3 270M
(GGFLIP_REAL_MODEL=1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.config.models_toml import default_cache_dir
from ggflip.errors import ExitCode

pytestmark = pytest.mark.real_model
MODELS = default_cache_dir() / "models" / "gemma-3-270m"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_quantize_inspect_and_run_without_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f16 = MODELS / "gemma-3-270m-F16.gguf"
    code, out, err = _run(capsys, "inspect", "--json", str(f16))
    assert code == ExitCode.OK, err
    facts = json.loads(out)
    assert (facts["architecture"], facts["file_type"], facts["n_vocab"]) == (
        "gemma3",
        "F16",
        262144,
    )
    assert 260e6 < facts["n_params"] < 280e6 and 15 < facts["bits_per_weight"] < 17
    code, out, err = _run(
        capsys,
        "quantize",
        str(f16),
        "--types",
        "Q8_0",
        "--out",
        str(tmp_path),
        "--no-models",
        "--json",
    )
    assert code == ExitCode.OK, err
    q8 = Path(json.loads(out)["quants"][0]["path"])
    code, out, _ = _run(capsys, "inspect", "--json", str(q8))
    q8_facts = json.loads(out)
    assert (
        q8_facts["file_type"] == "Q8_0"
        and q8_facts["vocab_fingerprint"] == facts["vocab_fingerprint"]
    )
    assert q8_facts["bits_per_weight"] < facts["bits_per_weight"] / 1.8
    code, out, err = _run(
        capsys,
        "run",
        "--baseline",
        str(f16),
        "--quant",
        str(q8),
        "--limit",
        "8",
        "--no-cache",
        "--json",
    )
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert [q["label"] for q in report["quants"]] == ["Q8_0"]
    assert 0 < report["quants"][0]["kl_mean"] < 0.05
    assert report["quants"][0]["bits_per_weight"] == pytest.approx(
        q8_facts["bits_per_weight"], abs=1e-3
    )
