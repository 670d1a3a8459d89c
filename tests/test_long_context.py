"""Long context in corpus mode: logits read a decode's slice at a time (memory that does not grow
with ctx × vocab), and KL by position in every report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tiny_gguf import write_tiny_gguf

from ggflip.backends.base import ScoreRequest
from ggflip.backends.fake import FakeBackend, FakeBackendFactory
from ggflip.config.models_toml import LlamaSettings, ModelSet
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import ChunkScored, KldFinished, KldReport
from ggflip.corpus.positions import bucket_edges, position_buckets
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.texts import CorpusText
from ggflip.errors import UsageError
from ggflip.reports.corpus import render_kld_html, render_kld_markdown, render_kld_report

# 1,400 words + BOS: two chunks of 600 tokens.
LONG = CorpusText("long.txt", "long.txt", " ".join(f"w{(i * 7) % 53}" for i in range(1400)))


class TestBuckets:
    def test_edges_grow_fourfold_and_stop_at_the_context(self) -> None:
        assert bucket_edges(512) == [(0, 510)]
        assert bucket_edges(8192) == [(0, 511), (512, 2047), (2048, 8190)]
        assert bucket_edges(32768)[-2:] == [(2048, 8191), (8192, 32766)]
        assert bucket_edges(40000)[-1] == (32768, 39998)

    def test_bucket_numbers_by_hand(self) -> None:
        """Two chunks of ctx 1030 scored from position 510: rows 0-1 of each chunk sit at
        positions 510-511 (first bucket), the rest at 512-1028 (second)."""
        ctx, first = 1030, 510
        per = ctx - 1 - first  # 519 rows a chunk
        kl = np.arange(2 * per, dtype=np.float64) / 1000
        same = np.arange(2 * per) % 3 == 0
        nll_base = np.full(2 * per, 2.0)
        nll = nll_base + np.where(np.arange(2 * per) % per < 2, 0.5, 0.1)
        first_bucket, second = position_buckets(kl, same, nll, nll_base, first, ctx)
        rows = [0, 1, per, per + 1]
        assert (first_bucket.lo, first_bucket.hi, first_bucket.n_tokens) == (0, 511, 4)
        assert first_bucket.kl_mean == pytest.approx(sum(rows) / 1000 / 4)
        assert first_bucket.same_top == sum(r % 3 == 0 for r in rows) / 4
        assert first_bucket.ppl_ratio == pytest.approx(np.exp(0.5))
        assert (second.lo, second.hi, second.n_tokens) == (512, 1028, 2 * per - 4)
        assert second.ppl_ratio == pytest.approx(np.exp(0.1))


@pytest.mark.parametrize(("n_batch", "n_ubatch"), [(64, 64), (128, 32), (96, 64)])
def test_llama_slices_are_the_ubatches_of_logits(
    tmp_path: Path, n_batch: int, n_ubatch: int
) -> None:
    """On the real llama.cpp: one slice per ubatch (n_ubatch tokens from each n_batch decode's
    start), equal to the rows `logits` returns for the whole request, bit for bit."""
    from ggflip.backends.llama import LlamaBackend

    path = write_tiny_gguf(tmp_path / "m.gguf")
    settings = LlamaSettings(
        n_ctx=256, n_batch=n_batch, n_ubatch=n_ubatch, n_threads=1, n_seq_max=1
    )
    backend = LlamaBackend(path, settings)
    try:
        tokens = tuple(backend.tokenize(" ".join(["What is the Answer"] * 80), add_bos=True))[:250]
        assert len(tokens) == 250
        request = ScoreRequest(tokens, tuple(range(100, 249)))
        whole = backend.logits([request])[0].copy()
        slices = [s.copy() for s in backend.logits_slices(request)]
    finally:
        backend.close()
    # the scored positions 100-248 cut at each ubatch's start
    starts = [u for b in range(0, 250, n_batch) for u in range(b, min(b + n_batch, 250), n_ubatch)]
    edges = [100, *(u for u in starts if 100 < u < 249), 249]
    assert [s.shape[0] for s in slices] == [b - a for a, b in zip(edges, edges[1:])]
    assert np.array_equal(np.concatenate(slices), whole)


def _run(model_set: ModelSet, factory: FakeBackendFactory, **kwargs: object) -> list[object]:
    spec = KldSpec(model_set, (LONG,), ctx=600, top_k=16, tail_samples=8, **kwargs)  # type: ignore[arg-type]
    return list(run_kld(spec, factory))


def _report(events: list[object]) -> KldReport:
    return next(e.report for e in events if isinstance(e, KldFinished))


class TestSlicedCorpusRun:
    def test_slices_give_the_numbers_of_one_read(
        self,
        fake_set: ModelSet,
        fake_factory: FakeBackendFactory,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Reading a chunk in slices of 64 rows (on the 32-row block grid) or at once gives the
        same report; slices of 40 rows (off the grid) the same NLL, same-top and KL lower bound
        (only the tail draws' blocks move)."""
        monkeypatch.setattr(FakeBackend, "SLICE_ROWS", 10_000)
        whole = _report(_run(fake_set, fake_factory)).to_dict()
        monkeypatch.setattr(FakeBackend, "SLICE_ROWS", 64)
        sliced = _report(_run(fake_set, fake_factory)).to_dict()
        for a, b in zip(whole["quants"], sliced["quants"]):
            a.pop("seconds"), b.pop("seconds")
            assert a == b
        monkeypatch.setattr(FakeBackend, "SLICE_ROWS", 40)
        off_grid = _report(_run(fake_set, fake_factory)).to_dict()
        for a, b in zip(whole["quants"], off_grid["quants"]):
            for key in ("ppl", "same_top", "kl_mean_lower_bound", "ln_ppl_ratio"):
                assert a[key] == pytest.approx(b[key], rel=1e-12), key

    def test_by_position_from_the_per_token_events(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        """`--score-from 0` scores every position; each bucket's numbers are those of the
        chunk events' per-token arrays at those positions."""
        events = _run(fake_set, fake_factory, score_from=0)
        report = _report(events)
        q2 = next(q for q in report.quants if q.label == "Q2_K")
        chunks = [e for e in events if isinstance(e, ChunkScored) and e.label == "Q2_K"]
        assert [(b.lo, b.hi) for b in q2.by_position] == [(0, 511), (512, 598)]
        for bucket in q2.by_position:
            kl, same, ratio = [], [], []
            for event in chunks:
                assert event.kl is not None and event.same_top is not None
                assert event.nll_base is not None and event.first_scored == 0
                # row j is position j: the position of the j-th scored token's prediction
                cut = slice(bucket.lo, bucket.hi + 1)
                kl += list(event.kl[cut])
                same += list(event.same_top[cut])
                ratio += list(event.nll[cut] - event.nll_base[cut])
            assert bucket.n_tokens == len(kl)
            assert bucket.kl_mean == pytest.approx(float(np.mean(kl)), rel=1e-12)
            assert bucket.same_top == pytest.approx(float(np.mean(same)), rel=1e-12)
            assert bucket.ppl_ratio == pytest.approx(float(np.exp(np.mean(ratio))), rel=1e-12)
        last = q2.by_position[-1]
        document = json.loads(report.to_json())
        q2_json = next(q for q in document["quants"] if q["label"] == "Q2_K")
        assert q2_json["by_position"][-1] == dataclasses.asdict(last)
        console = Console(record=True, width=200)
        render_kld_report(report, console)
        for text in (console.export_text(), render_kld_markdown(report), render_kld_html(report)):
            assert "KL by position" in text
            assert "512–598" in text
            assert f"{last.kl_mean:.5f} · {last.same_top:.1%} · ×{last.ppl_ratio:.4f}" in text

    def test_score_from_keys_the_baseline_and_is_checked(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        from ggflip.corpus.engine import corpus_key_parts

        probe = fake_factory.probe(fake_set.baseline)
        spec = KldSpec(fake_set, (LONG,), ctx=600)
        assert "score_from" not in corpus_key_parts(spec, probe, fake_factory, 16)
        same = dataclasses.replace(spec, score_from=300)
        assert corpus_key_parts(same, probe, fake_factory, 16) == corpus_key_parts(
            spec, probe, fake_factory, 16
        )
        other = dataclasses.replace(spec, score_from=0)
        assert corpus_key_parts(other, probe, fake_factory, 16)["score_from"] == 0
        assert other.rows_per_chunk == 599
        with pytest.raises(UsageError, match="--score-from must be between 0 and ctx - 2 = 598"):
            KldSpec(fake_set, (LONG,), ctx=600, score_from=599)


def test_ctx_beyond_the_trained_context_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny model is trained for 256 tokens (its `llama.context_length`): --ctx 512 is one
    line naming the model and its limit."""
    from ggflip.cli.main import main
    from ggflip.errors import ExitCode

    model = write_tiny_gguf(tmp_path / "m.gguf")
    text = tmp_path / "t.txt"
    text.write_text("What is the Answer " * 400)
    (tmp_path / "models.toml").write_text(f'[sets.s]\nbaseline = "{model}"\nquants = ["{model}"]\n')
    code = main(["kld", "--models", str(tmp_path / "models.toml"), "--text", str(text),
                 "--ctx", "512", "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE
    assert err.splitlines() == [
        "ggflip: error: --ctx 512 is beyond m's trained context of 256 tokens (m.gguf); give "
        "--ctx 256 or less"
    ]
