"""MMLU 0- and 5-shot on the real Gemma 3 270M (F16 against itself and Q2_K), and prefix reuse on
it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.cli.main import main

pytestmark = pytest.mark.real_model
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ggflip.config.models_toml import load_models_toml

    demo = load_models_toml(REPO / "models.toml").get_set("gemma-270m")
    q2 = next(q.path for q in demo.quants if q.label.startswith("Q2_K"))
    path = tmp_path_factory.mktemp("real_tasks") / "models.toml"
    path.write_text(
        "[llama]\nn_ctx = 8192\n[sets.real]\n"
        f'baseline = {{ path = "{demo.baseline.path}", label = "F16" }}\n'
        f'quants = [ {{ path = "{demo.baseline.path}", label = "F16-self" }}, {{ path = "{q2}", '
        f'label = "Q2_K" }} ]\n'
    )
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["run", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_mmlu_zero_and_five_shot(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--models", str(models), "--limit", "12", "--seed", "5", "--no-cache")
    zero = _run(capsys, *common, "--task", "mmlu")
    five = _run(capsys, *common, "--task", "mmlu_5shot")
    naive = _run(capsys, *common, "--task", "mmlu_5shot", "--no-prefix-reuse")
    assert (zero["prompt_version"], five["prompt_version"]) == (
        "mmlu-letter-v1",
        "mmlu-letter-v1+5shot",
    )
    for report in (zero, five, naive):
        self_q, q2 = report["quants"]
        assert self_q["kl_max"] < 1e-5 and self_q["flips"] == 0
        assert q2["kl_mean"] > 0
    # Prefix reuse changes only how tokens are grouped into decodes. On Gemma's F16 weights that
    # moves logits by up to ~0.02, so answers agree, but Q2_K's per-question KL moves by up to
    # 27% of itself (measured on these 12 questions: 0.028 at most) and its mean by 1.0%.
    for shared, plain in zip(five["quants"][1]["rows"], naive["quants"][1]["rows"]):
        assert (shared["base_choice"], shared["quant_choice"]) == (
            plain["base_choice"],
            plain["quant_choice"],
        )
        assert shared["kl"] == pytest.approx(plain["kl"], rel=0.35)
    assert five["quants"][1]["kl_mean"] == pytest.approx(naive["quants"][1]["kl_mean"], rel=0.03)
