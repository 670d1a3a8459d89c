"""The fused kernel and the pipeline on the real Gemma 3 270M (262,144-token rows).

Needs `ggflip prepare-demo` (scripts/test.sh runs it) and GGFLIP_REAL_MODEL=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.llama import LlamaBackend
from ggflip.cli.main import main
from ggflip.config.models_toml import LlamaSettings, load_models_toml
from ggflip.scoring import kernels
from ggflip.scoring.topk import baseline_normalize, kl_rows, normalize
from tests.test_overlap import _without_timings

pytestmark = pytest.mark.real_model
REPO = Path(__file__).parents[1]
TEXT = (REPO / "README.md").read_text()[:6000]


def _paths() -> tuple[Path, Path]:
    demo = load_models_toml(REPO / "models.toml").get_set("gemma-270m")
    q8 = next(q.path for q in demo.quants if q.label.startswith("Q8_0"))
    return demo.baseline.path, q8


def _rows(path: Path, n_rows: int) -> np.ndarray:
    backend = LlamaBackend(path, LlamaSettings(n_ctx=512, n_seq_max=1, n_threads=2))
    try:
        tokens = tuple(backend.tokenize(TEXT, add_bos=True)[:256])
        positions = tuple(range(len(tokens) - 1 - n_rows, len(tokens) - 1))
        return backend.logits([ScoreRequest(tokens, positions)])[0]
    finally:
        backend.close()


def test_kl_against_a_float64_reference_stays_below_1e_7() -> None:
    """F16 vs Q8_0 on 48 real rows: the float32-exponential kernel (top 512 + tail + 32 draws)
    against the same estimator computed in float64 from the logits (tail tokens the quant lifts
    past twice the K-th baseline probability out of the control term), and against the exact
    KL."""
    base_path, quant_path = _paths()
    base, quant = _rows(base_path, 48), _rows(quant_path, 48)
    _, record = baseline_normalize(base, 512, 32, np.random.default_rng(0))
    lower, gap = kl_rows(record, normalize(quant, record.top_ids))
    p, q = kernels.log_softmax(base), kernels.log_softmax(quant)
    errors = []
    for row in range(len(base)):
        ids, draws = record.top_ids[row], record.sample_ids[row]
        outside = np.ones(p.shape[1], dtype=bool)
        outside[ids] = False
        p_tail, q_tail = kernels.logsumexp(p[row, outside]), kernels.logsumexp(q[row, outside])
        head = np.sum(np.exp(p[row, ids]) * (p[row, ids] - q[row, ids]))
        want_lower = head + np.exp(p_tail) * (p_tail - q_tail)
        log_r = (q[row, draws] - q_tail) - (p[row, draws] - p_tail)
        lifted = outside & (q[row] > p[row, ids].min() + np.log(16.0))
        q_b = 1.0 - np.exp(q[row, lifted] - q_tail).sum()
        in_b = ~lifted[draws]
        terms = -log_r + np.where(in_b, np.exp(log_r) / q_b, 0.0) - 1.0
        want_gap = np.exp(p_tail) * np.mean(terms)
        errors.append(abs(lower[row] + gap[row] - max(want_lower, 0) - max(want_gap, 0)))
    assert max(errors) < 1e-7
    exact = kernels.kl_divergence(p, q)
    assert 1e-4 < exact.mean() < 1e-2  # a real Q8_0 distance, far above the error
    assert (lower + gap).mean() == pytest.approx(exact.mean(), rel=0.02)


def test_kld_report_is_the_same_with_and_without_overlap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_path, quant_path = _paths()
    models = tmp_path / "models.toml"
    models.write_text(
        "[llama]\nn_threads = 1\n[sets.real]\n"
        f'baseline = {{ path = "{base_path}", label = "F16" }}\n'
        f'quants = [ {{ path = "{quant_path}", label = "Q8_0" }} ]\n'
    )
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    args = ["kld", "--models", str(models), "--text", str(text), "--ctx", "256", "--chunks", "3"]
    reports = []
    for extra in (["--no-overlap"], ["--scoring-threads", "1"]):
        assert main([*args, *extra, "--no-cache", "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["quants"][0]["kl_mean"] > 1e-4
    assert _without_timings(reports[0]) == _without_timings(reports[1])
