"""Corpus mode (`ggflip kld`): chunking, every statistic against hand computations, the compact
cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ggflip.backends.base import ScoreRequest
from ggflip.backends.fake import FakeBackend, FakeBackendFactory, FakeModel
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.corpus.cache import bytes_per_token, llama_cpp_bytes_per_token
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import (
    BaselineKldFinished,
    ChunkScored,
    CorpusReady,
    KldFinished,
    KldReport,
)
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.stats import median, percentile
from ggflip.corpus.texts import CorpusText, chunk_tokens, read_corpus
from ggflip.errors import DataError, UsageError, VocabMismatchError
from ggflip.runs.events import BaselineFromCache
from ggflip.scoring import kernels

TEXT = " ".join(f"word{(i * 7) % 41} thing{i % 13} item{(i * 3) % 29}" for i in range(200))
CTX = 32
TEXTS = (CorpusText("memory", "memory", TEXT),)


def _events(spec: KldSpec, factory: FakeBackendFactory) -> list[object]:
    return list(run_kld(spec, factory))


def _report(events: list[object]) -> KldReport:
    return next(e.report for e in events if isinstance(e, KldFinished))


def _spec(fake_set: ModelSet, tmp_path: Path | None, **kwargs: object) -> KldSpec:
    return KldSpec(fake_set, TEXTS, ctx=CTX, cache_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


class TestChunking:
    """Tokens are cut like llama-perplexity: BOS per chunk, non-overlapping, second half scored."""

    def test_chunks_replace_first_token_with_bos(self) -> None:
        tokens = list(range(100, 150))
        chunks = chunk_tokens(tokens, [1], 10, None, "t")
        assert chunks.shape == (5, 10)
        assert (chunks[:, 0] == 1).all()
        assert chunks[2, 1:].tolist() == list(range(121, 130))

    def test_chunk_count_is_capped_and_partial_tail_dropped(self) -> None:
        assert chunk_tokens(list(range(57)), [], 10, 3, "t").shape == (3, 10)
        assert chunk_tokens(list(range(57)), [], 10, 99, "t").shape == (5, 10)
        assert (
            chunk_tokens(list(range(57)), [], 10, None, "t")[0, 0] == 0
        )  # no BOS: first token kept

    def test_text_shorter_than_a_chunk_is_refused(self) -> None:
        with pytest.raises(DataError, match="fewer than one chunk"):
            chunk_tokens(list(range(9)), [1], 10, None, "short.txt")

    def test_scored_rows_are_the_second_half(self, fake_set: ModelSet) -> None:
        spec = KldSpec(fake_set, TEXTS, ctx=512)
        assert (spec.first_scored, spec.rows_per_chunk) == (256, 255)
        assert KldSpec(fake_set, TEXTS, ctx=33).rows_per_chunk == 33 - 1 - 16

    def test_read_corpus_drops_one_trailing_newline(self, tmp_path: Path) -> None:
        path = tmp_path / "t.txt"
        path.write_text("a b\n\n")
        assert read_corpus(path) == "a b\n"
        with pytest.raises(DataError, match="not found"):
            read_corpus(tmp_path / "missing.txt")

    def test_bad_flags(self, fake_set: ModelSet) -> None:
        with pytest.raises(UsageError):
            KldSpec(fake_set, TEXTS, ctx=4)
        with pytest.raises(UsageError):
            KldSpec(fake_set, TEXTS, chunks=0)


def _hand(
    factory: FakeBackendFactory, fake_set: ModelSet, quant_path: str
) -> dict[str, np.ndarray]:
    """Per-token values computed directly from the fake models' full distributions."""
    base = factory.open(fake_set.baseline)
    quant = factory.open(ModelSpec("q", Path(quant_path)))
    assert isinstance(base, FakeBackend) and isinstance(quant, FakeBackend)
    tokens = base.tokenize(TEXT, add_bos=True)
    n_chunks = len(tokens) // CTX
    nll, nll_base, kl, same = [], [], [], []
    for c in range(n_chunks):
        chunk = [0] + tokens[c * CTX + 1 : (c + 1) * CTX]
        for pos in range(CTX // 2, CTX - 1):
            request = [ScoreRequest(tuple(chunk), (pos,))]
            p = kernels.log_softmax(base.logits(request)[0][0])
            q = kernels.log_softmax(quant.logits(request)[0][0])
            target = chunk[pos + 1]
            nll.append(-q[target])
            nll_base.append(-p[target])
            kl.append(float(np.sum(np.exp(p) * (p - q))))
            same.append(int(np.argmax(p)) == int(np.argmax(q)))
    return {
        "nll": np.array(nll),
        "nll_base": np.array(nll_base),
        "kl": np.array(kl),
        "same": np.array(same),
    }


class TestStatisticsByHand:
    """Each statistic of the report equals the formula applied to per-token values computed by
    hand."""

    @pytest.fixture
    def report_and_hand(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> tuple[dict, dict]:
        report = _report(_events(_spec(fake_set, None), fake_factory))
        quant = next(q for q in report.to_dict()["quants"] if q["label"] == "Q2_K")
        return quant, _hand(fake_factory, fake_set, "/m/q2.gguf")

    def test_perplexities_and_their_ratio(self, report_and_hand: tuple[dict, dict]) -> None:
        q, h = report_and_hand
        n = h["nll"].size
        assert (
            q["n_tokens"] == n == (601 // CTX) * (CTX - 1 - CTX // 2)
        )  # the text is 600 words + BOS
        assert q["ppl"] == pytest.approx(math.exp(h["nll"].mean()), rel=1e-6)
        assert q["ppl_base"] == pytest.approx(math.exp(h["nll_base"].mean()), rel=1e-6)
        assert q["ppl_ratio"] == pytest.approx(
            math.exp(h["nll"].mean() - h["nll_base"].mean()), rel=1e-6
        )
        assert q["ln_ppl_ratio"] == pytest.approx(h["nll"].mean() - h["nll_base"].mean(), abs=1e-7)
        assert q["ppl_diff"] == pytest.approx(
            math.exp(h["nll"].mean()) - math.exp(h["nll_base"].mean()), rel=1e-5
        )
        se = h["nll"].std(ddof=0) / math.sqrt(n - 1)
        assert q["ppl_unc"] == pytest.approx(math.exp(h["nll"].mean()) * se, rel=1e-5)

    def test_uncertainties_of_the_ratio_use_the_covariance(
        self, report_and_hand: tuple[dict, dict]
    ) -> None:
        q, h = report_and_hand
        n = h["nll"].size
        a, b = h["nll"], h["nll_base"]
        cov = np.mean((a - a.mean()) * (b - b.mean())) / (n - 1)
        var_a, var_b = a.var() / (n - 1), b.var() / (n - 1)
        assert q["ln_ppl_ratio_unc"] == pytest.approx(math.sqrt(var_a + var_b - 2 * cov), rel=1e-5)
        assert q["ppl_ratio_unc"] == pytest.approx(
            q["ppl_ratio"] * math.sqrt(var_a + var_b - 2 * cov), rel=1e-5
        )
        assert q["ll_correlation"] == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-6)
        ppl, ppl_b = math.exp(a.mean()), math.exp(b.mean())
        diff_unc = math.sqrt(ppl**2 * var_a + ppl_b**2 * var_b - 2 * ppl * ppl_b * cov)
        assert q["ppl_diff_unc"] == pytest.approx(diff_unc, rel=1e-5)

    def test_kl_mean_percentiles_and_extremes(self, report_and_hand: tuple[dict, dict]) -> None:
        q, h = report_and_hand
        kl = h["kl"]
        assert q["kl_mean"] == pytest.approx(kl.mean(), rel=1e-5)
        assert q["kl_mean_unc"] == pytest.approx(kl.std() / math.sqrt(kl.size - 1), rel=1e-4)
        assert q["kl_median"] == pytest.approx(np.median(kl), rel=1e-5)
        assert q["kl_max"] == pytest.approx(kl.max(), rel=1e-5)
        assert q["kl_min"] == pytest.approx(kl.min(), rel=1e-4)
        for key, pct in (
            ("kl_p99_9", 99.9),
            ("kl_p99", 99),
            ("kl_p95", 95),
            ("kl_p90", 90),
            ("kl_p10", 10),
            ("kl_p5", 5),
            ("kl_p1", 1),
            ("kl_p0_1", 0.1),
        ):
            assert q[key] == pytest.approx(np.percentile(kl, pct), rel=1e-4), key

    def test_delta_p_and_its_rms(self, report_and_hand: tuple[dict, dict]) -> None:
        q, h = report_and_hand
        dp = np.exp(-h["nll"]) - np.exp(-h["nll_base"])
        n = dp.size
        assert q["dp_mean"] == pytest.approx(dp.mean(), rel=1e-5, abs=1e-12)
        assert q["dp_mean_unc"] == pytest.approx(dp.std() / math.sqrt(n - 1), rel=1e-5)
        assert q["dp_max"] == pytest.approx(dp.max(), rel=1e-5)
        assert q["dp_min"] == pytest.approx(dp.min(), rel=1e-5)
        assert q["dp_median"] == pytest.approx(np.median(dp), rel=1e-4, abs=1e-12)
        for key, pct in (("dp_p75", 75), ("dp_p25", 25), ("dp_p99", 99), ("dp_p1", 1)):
            assert q[key] == pytest.approx(np.percentile(dp, pct), rel=1e-4, abs=1e-12), key
        rms = math.sqrt(np.mean(dp**2))
        assert q["dp_rms"] == pytest.approx(rms, rel=1e-5)
        mse_unc = (dp**2).std() / math.sqrt(n - 1)
        assert q["dp_rms_unc"] == pytest.approx(0.5 / rms * mse_unc, rel=1e-4)

    def test_same_top_and_its_error(self, report_and_hand: tuple[dict, dict]) -> None:
        q, h = report_and_hand
        p = h["same"].mean()
        assert 0 < p < 1
        assert q["same_top"] == pytest.approx(p)
        assert q["same_top_unc"] == pytest.approx(math.sqrt(p * (1 - p) / (h["same"].size - 1)))


class TestLlamaFormulas:
    """The small helpers follow perplexity.cpp exactly."""

    def test_percentile_interpolates_at_fraction_times_n_minus_1(self) -> None:
        values = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
        assert percentile(values, 0.5) == 4.0
        assert percentile(values, 0.9) == pytest.approx(0.4 * 8 + 0.6 * 16)
        assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 16.0
        assert median(np.array([1.0, 3.0, 10.0, 20.0])) == 6.5

    def test_self_comparison_is_null(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        report = _report(_events(_spec(fake_set, None), fake_factory)).to_dict()
        self_q = report["quants"][0]
        assert self_q["kl_max"] < 1e-6 and self_q["same_top"] == 1.0 and self_q["ppl_ratio"] == 1.0
        assert self_q["dp_rms"] == 0.0


class TestCompactCache:
    """The baseline is stored as top K + tail + tail draws, reused, verified, and small."""

    def test_second_run_reads_the_cache_and_agrees(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        first = _report(_events(_spec(fake_set, tmp_path), fake_factory))
        events = _events(_spec(fake_set, tmp_path), fake_factory)
        assert any(isinstance(e, BaselineFromCache) for e in events)
        assert next(e for e in events if isinstance(e, BaselineKldFinished)).summary.from_cache
        again = _report(events)
        assert [q.stats.kl_mean for q in again.quants] == [q.stats.kl_mean for q in first.quants]
        assert again.n_text_tokens == first.n_text_tokens > 0

    def test_damaged_entry_is_recomputed(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        first = _report(_events(_spec(fake_set, tmp_path), fake_factory))
        assert first.cache and first.cache.path
        target = Path(first.cache.path) / "top_logits.npy"
        data = bytearray(target.read_bytes())
        data[-3] ^= 0xFF
        target.write_bytes(bytes(data))
        events = _events(_spec(fake_set, tmp_path), fake_factory)
        assert not any(isinstance(e, BaselineFromCache) for e in events)
        assert [q.stats.kl_mean for q in _report(events).quants] == [
            q.stats.kl_mean for q in first.quants
        ]

    def test_size_per_token(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        report = _report(_events(_spec(fake_set, tmp_path, top_k=16, tail_samples=8), fake_factory))
        assert report.cache is not None
        # per token: 16 int32 ids + 16 float32 logits, 8 int32 draws + 8 float32 logits, the
        # log-sum-exp, the tail mass and the next token's log-prob (float64 each)
        assert report.cache.bytes_per_token == bytes_per_token(16, 8) == 16 * 8 + 8 * 8 + 24
        assert report.cache.path is not None
        folder = Path(report.cache.path)
        arrays = report.tokens_scored * report.cache.bytes_per_token + report.n_chunks * CTX * 4
        meta = (folder / "meta.json").stat().st_size
        # + one header of at most 128 bytes per .npy file (8)
        assert arrays + meta < report.cache.file_bytes <= arrays + meta + 8 * 128
        # the docstring's and docs/modes.md's "119x smaller" for Gemma's vocabulary at the defaults
        assert llama_cpp_bytes_per_token(262144) == 2 * 262144 + 8
        assert bytes_per_token(512, 32) == 4376
        assert llama_cpp_bytes_per_token(262144) // bytes_per_token(512, 32) == 119

    def test_no_cache_leaves_nothing(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        report = _report(_events(_spec(fake_set, None), fake_factory))
        assert report.cache is not None and report.cache.path is None

    def test_tail_estimate_closes_most_of_the_gap(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        exact = _report(
            _events(_spec(fake_set, None), fake_factory)
        )  # K = 512 >= vocabulary of 256: exact
        small = _report(_events(_spec(fake_set, None, top_k=16, tail_samples=64), fake_factory))
        for full, cut in zip(exact.quants[1:], small.quants[1:]):
            assert (
                cut.tail is not None
                and small.cache is not None
                and small.cache.tail_mass_mean > 0.05
            )
            lower = cut.tail.kl_mean_lower_bound
            assert lower < full.stats.kl_mean
            assert abs(cut.stats.kl_mean - full.stats.kl_mean) < 0.25 * (full.stats.kl_mean - lower)
            assert (
                abs(cut.stats.kl_mean - full.stats.kl_mean)
                < 3 * cut.tail.kl_tail_estimate_unc + 1e-12
            )


class TestEvents:
    """Events carry what a per-token view needs."""

    def test_chunk_events_carry_pieces_and_per_token_kl(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        events = _events(_spec(fake_set, None), fake_factory)
        ready = next(e for e in events if isinstance(e, CorpusReady))
        chunks = [e for e in events if isinstance(e, ChunkScored)]
        assert len(chunks) == ready.n_chunks * len(fake_set.models)
        quant = next(e for e in chunks if e.label == "Q2_K" and e.chunk == 1)
        assert len(quant.pieces) == CTX and quant.pieces[0] == "<bos>"
        assert quant.kl is not None and quant.kl.shape == (ready.rows_per_chunk,)
        assert quant.p_diff is not None and quant.same_top is not None
        assert (quant.kl > 0).all()

    def test_vocabulary_mismatch_is_refused(self, fake_set: ModelSet) -> None:
        other = FakeModel(vocab=tuple(f"t{i}" for i in range(256)))
        factory = FakeBackendFactory(
            {"/m/f16.gguf": FakeModel(), "/m/q8.gguf": other, "/m/q2.gguf": FakeModel()}
        )
        with pytest.raises(VocabMismatchError):
            _events(_spec(fake_set, None), factory)


def test_report_json_has_the_documented_keys(
    fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    document = json.loads(_report(_events(_spec(fake_set, None), fake_factory)).to_json())
    assert document["mode"] == "kld" and document["ctx"] == CTX
    for quant in document["quants"]:
        assert {
            "kl_mean",
            "kl_median",
            "same_top",
            "ppl_ratio",
            "kl_mean_lower_bound",
            "kl_tail_estimate",
        } <= set(quant)


def _exact_chunk_kl(models: Path, text: str, ctx: int, chunks: int) -> tuple[float, float]:
    """Mean full-vocabulary KL(baseline || "noisy") in float64 over each chunk's second half, and
    the fraction of those positions whose argmax agrees, from the logits of one chunk per
    decode (as llama-perplexity scores)."""
    from dataclasses import replace

    from ggflip.backends.llama import LlamaBackendFactory
    from ggflip.config.models_toml import load_models_toml

    tiny = load_models_toml(models).get_set("tiny")
    specs = [tiny.baseline, next(q for q in tiny.quants if q.label == "noisy")]
    factory = LlamaBackendFactory()
    backends = [
        factory.open(replace(m, llama=replace(m.llama, n_ctx=ctx, n_seq_max=1))) for m in specs
    ]
    try:
        tokens = backends[0].tokenize(text, add_bos=True)
        bos = backends[0].tokenize("", add_bos=True)
        kls, agree = [], []
        for chunk in range(chunks):
            ids = tokens[chunk * ctx : (chunk + 1) * ctx]
            ids[0] = bos[0]
            request = ScoreRequest(tuple(ids), tuple(range(ctx // 2, ctx - 1)))
            p_logits, q_logits = (b.logits([request])[0].astype(np.float64) for b in backends)
            for p_row, q_row in zip(p_logits, q_logits):
                log_p = p_row - np.log(np.sum(np.exp(p_row - p_row.max()))) - p_row.max()
                log_q = q_row - np.log(np.sum(np.exp(q_row - q_row.max()))) - q_row.max()
                kls.append(float(np.sum(np.exp(log_p) * (log_p - log_q))))
                agree.append(int(np.argmax(p_row)) == int(np.argmax(q_row)))
    finally:
        for backend in backends:
            backend.close()
    return float(np.mean(kls)), float(np.mean(agree))


class TestCli:
    """`ggflip kld` end to end on tiny generated GGUFs loaded by the real llama.cpp."""

    @pytest.fixture
    def tiny_kld(self, tmp_path: Path, tiny_gguf_dir: Path) -> tuple[Path, Path]:
        lines = [
            "[llama]",
            "n_threads = 1",
            "[sets.tiny]",
            f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "F32" }}',
        ]
        lines += ["quants = [", f'  {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "self" }},']
        lines += [f'  {{ path = "{tiny_gguf_dir / "noisy.gguf"}", label = "noisy" }},', "]"]
        models = tmp_path / "models.toml"
        models.write_text("\n".join(lines) + "\n")
        text = tmp_path / "text.txt"
        text.write_text(
            " ".join(f"the cat {i % 7} sat on mat number {i % 11}" for i in range(120)) + "\n"
        )
        return models, text

    def test_json_on_stdout(
        self, tmp_path: Path, tiny_kld: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        from ggflip.cli.main import main

        models, text = tiny_kld
        args = [
            "kld",
            "--models",
            str(models),
            "--text",
            str(text),
            "--ctx",
            "64",
            "--chunks",
            "3",
            "--top-k",
            "512",  # above the tiny vocabulary's 468 tokens: the cached KL is exact
            "--json",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
        assert main(args) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["n_chunks"] == 3 and report["tokens_scored"] == 3 * 31
        self_q, noisy = report["quants"]
        assert (
            self_q["kl_mean"] < 1e-5
            and self_q["same_top"] == 1.0
            and self_q["ppl_ratio"] == pytest.approx(1.0)
        )
        exact_kl, exact_same_top = _exact_chunk_kl(models, text.read_text()[:-1], 64, 3)
        assert exact_kl > 1e-3
        # float32 exponentials in the kernel: 3.5e-8 relative measured
        assert noisy["kl_mean"] == pytest.approx(exact_kl, rel=1e-6)
        assert noisy["same_top"] == pytest.approx(exact_same_top, abs=1e-12)
        assert main(args) == 0  # second run: baseline from the cache, same numbers
        again = json.loads(capsys.readouterr().out)
        assert again["baseline"]["from_cache"] and again["quants"][1]["kl_mean"] == noisy["kl_mean"]

    def test_short_text_is_one_error_line(
        self, tmp_path: Path, tiny_kld: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        from ggflip.cli.main import main

        models, _ = tiny_kld
        short = tmp_path / "short.txt"
        short.write_text("just a few words")
        assert (
            main(
                ["kld", "--models", str(models), "--text", str(short), "--ctx", "64", "--no-cache"]
            )
            == 5
        )
        captured = capsys.readouterr()
        last = captured.err.strip().splitlines()[-1]
        assert (
            captured.out == ""
            and last.startswith("ggflip: error:")
            and "fewer than one chunk" in last
        )


@pytest.mark.real_model
def test_gemma_cached_kl_matches_exact_kl(tmp_path: Path) -> None:
    """On Gemma 3 270M, the compact baseline's KL is within 2% of the exact full-vocabulary KL."""
    from dataclasses import replace

    from ggflip.backends.llama import LlamaBackendFactory
    from ggflip.config.models_toml import load_models_toml
    from ggflip.scoring.topk import baseline_normalize, kl_rows, normalize

    full = load_models_toml(Path(__file__).parents[1] / "models.toml").get_set("gemma-270m")
    quant = next(q for q in full.quants if q.label.startswith("Q2_K"))
    factory = LlamaBackendFactory()
    specs = [
        replace(m, llama=replace(m.llama, n_ctx=256, n_seq_max=1, n_threads=2))
        for m in (full.baseline, quant)
    ]
    base, q2 = (factory.open(spec) for spec in specs)
    text = " ".join(
        ["The quick brown fox jumps over the lazy dog while the farmer counts his sheep."] * 3
    )
    text += (
        " In 1905 Albert Einstein published four papers that changed physics: on the "
        "photoelectric effect,"
    )
    text += (
        " Brownian motion, special relativity and the equivalence of mass and energy. Each was "
        "cited for decades." * 6
    )
    chunk = chunk_tokens(
        base.tokenize(text, add_bos=True), base.tokenize("", add_bos=True), 128, 1, "t"
    )[0]
    request = [ScoreRequest(tuple(int(t) for t in chunk), tuple(range(64, 127)))]
    p_logits, q_logits = base.logits(request)[0], q2.logits(request)[0]
    base.close()
    q2.close()
    exact = kernels.kl_divergence(
        kernels.log_softmax(p_logits), kernels.log_softmax(q_logits)
    ).mean()
    _, rows = baseline_normalize(p_logits, 512, 32, np.random.default_rng(0))
    lower, gap = kl_rows(rows, normalize(q_logits))
    assert lower.mean() <= exact * (1 + 1e-6)
    assert abs((lower + gap).mean() / exact - 1) < 0.02
