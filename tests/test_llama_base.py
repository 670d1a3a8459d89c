"""llama-perplexity base files (`--kl-divergence-base`): the reader against an independent writer
of perplexity.cpp's encoding (tests/llama_base_writer.py), the record converted from them, KL
from that record against float64 KL computed directly, every bad input, and `kld --llama-base`
end to end on tiny GGUFs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ggflip.cli.main import main
from ggflip.corpus.cache import BaselineWriter
from ggflip.corpus.llama_base import LlamaBaseFile
from ggflip.corpus.llama_import import chunk_record, decoded_tokens, import_chunks
from ggflip.errors import DataError, VocabMismatchError
from ggflip.scoring.topk import kl_rows, normalize
from tests.llama_base_writer import encode_row, true_logprobs, write_base_file

N_CTX = 16  # 7 scored rows a chunk: positions 8..14 predict tokens 9..15
ROWS = N_CTX - 1 - N_CTX // 2
N_VOCAB = 301  # odd: each row carries one uint16 of padding
BOS = 1


def _logits(rng: np.random.Generator, n_rows: int, spread: float = 4.0) -> np.ndarray:
    """Rows whose logits span about 30 nats, so the 16-nat window cuts some tokens off."""
    base = rng.normal(0.0, spread, size=(n_rows, N_VOCAB))
    base[:, :40] += 10.0  # a head well above the rest
    return base.astype(np.float32)


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    """A 3-chunk file, its tokens and each chunk's logits."""
    rng = np.random.default_rng(7)
    tokens = rng.integers(3, N_VOCAB, size=(3, N_CTX)).astype(np.int32)
    tokens[0, 0] = BOS  # tokenized with BOS: the text's first token is BOS
    rows = [_logits(rng, ROWS) for _ in range(3)]
    path = tmp_path / "base.kld"
    write_base_file(path, tokens, rows, N_VOCAB)
    return path, tokens, rows


class TestFormat:
    """The header, tokens and rows read back as perplexity.cpp wrote them."""

    def test_header_and_layout(self, made: tuple[Path, np.ndarray, list[np.ndarray]]) -> None:
        path, tokens, _ = made
        base = LlamaBaseFile.open(path)
        assert (base.n_ctx, base.n_vocab, base.n_chunk) == (N_CTX, N_VOCAB, 3)
        assert (base.first_scored, base.rows_per_chunk, base.row_width) == (8, 7, 306)
        assert path.stat().st_size == 20 + 4 * 3 * 16 + 3 * 7 * 306 * 2
        assert (base.tokens() == tokens).all()

    def test_rows_decode_to_the_log_probs_within_half_a_step(
        self, made: tuple[Path, np.ndarray, list[np.ndarray]]
    ) -> None:
        path, _, rows = made
        base = LlamaBaseFile.open(path)
        block = base.rows(2, 1, 5)
        expected = true_logprobs(rows[2][1:5])
        decoded = block.logprobs().astype(np.float64)
        bottom = expected.max(axis=1, keepdims=True) - 16.0
        inside = expected > bottom + 1e-3
        step = block.scale[:, None].astype(np.float64)
        assert np.abs(decoded - expected)[inside].max() <= (step / 2 + 2e-5).max()
        # below the window every token decodes to the window's bottom
        below = expected < bottom - 1e-3
        assert below.any()
        assert np.allclose(decoded[below], np.broadcast_to(bottom, decoded.shape)[below], atol=1e-4)
        # the top token is exact (code 65535)
        top = expected.argmax(axis=1)
        assert np.abs(decoded[np.arange(4), top] - expected[np.arange(4), top]).max() < 2e-5

    def test_window_is_read_from_the_scale(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(1)
        tokens = rng.integers(0, N_VOCAB, size=(1, N_CTX)).astype(np.int32)
        for window in (16, 24):
            path = tmp_path / f"w{window}.kld"
            write_base_file(path, tokens, [_logits(rng, ROWS, 8.0)], N_VOCAB, window=window)
            base = LlamaBaseFile.open(path)
            assert base.window_nats() == window
            # either window, the record keeps exactly the tokens decoded above -16, as
            # both tools' --kl-divergence do
            decoded = base.rows(0, 0, ROWS).logprobs()
            record, _ = chunk_record(base, 0, tokens[0], (N_VOCAB, 0, 4))
            kept = np.exp(record.top_logprobs) > 0
            assert (kept.sum(axis=1) == (decoded > -16).sum(axis=1)).all()
            if window == 24:
                assert ((decoded > -24) & (decoded <= -16)).any()  # coded, yet left out

    def test_bos_replaces_each_chunks_first_token(
        self, made: tuple[Path, np.ndarray, list[np.ndarray]]
    ) -> None:
        _, tokens, _ = made
        decoded = decoded_tokens(tokens, BOS)
        assert (decoded[:, 0] == BOS).all() and (decoded[:, 1:] == tokens[:, 1:]).all()
        # a file written without BOS (its first token is not the model's BOS) is decoded as is
        assert (decoded_tokens(tokens, 2) == tokens).all()


def _kept_logprobs(logits: np.ndarray) -> np.ndarray:
    """Each row as llama-perplexity's KL reads it, float64: the decoded log-probs, NaN where
    the decoded value is at or below -16."""
    decoded = np.stack(
        [
            row[4 : 4 + N_VOCAB].astype(np.float32) * row[:4].view(np.float32)[0]
            + row[:4].view(np.float32)[1]
            for row in (encode_row(r) for r in logits)
        ]
    ).astype(np.float64)
    return np.where(decoded > -16.0, decoded, np.nan)


class TestRecord:
    """A chunk's rows as ggflip's record and its KL against a quant's rows."""

    def test_record_is_the_kept_tokens_normalized(
        self, made: tuple[Path, np.ndarray, list[np.ndarray]]
    ) -> None:
        path, tokens, rows = made
        base = LlamaBaseFile.open(path)
        record, target = chunk_record(base, 1, tokens[1], (N_VOCAB, 0, 4))
        kept = _kept_logprobs(rows[1])
        normalized = kept - np.log(np.nansum(np.exp(kept), axis=1, keepdims=True))
        order = np.argsort(-np.nan_to_num(kept, nan=-1e9), axis=1, kind="stable")
        n_kept = (~np.isnan(kept)).sum(axis=1)
        for r in range(ROWS):
            ids = record.top_ids[r, : n_kept[r]]
            assert set(ids.tolist()) == set(order[r, : n_kept[r]].tolist())
            assert np.allclose(record.top_logprobs[r, : n_kept[r]], normalized[r, ids], atol=1e-6)
            assert np.exp(record.top_logprobs[r, n_kept[r] :]).max(initial=0.0) == 0.0
        # the next token's log-prob is llama's decoded value, not renormalized nor cut
        decoded = np.stack([encode_row(r) for r in rows[1]])
        codes = decoded[np.arange(ROWS), 4 + tokens[1][9:]].astype(np.float32)
        floats = decoded[:, :4].copy().view(np.float32)
        assert np.array_equal(target, (codes * floats[:, 0] + floats[:, 1]).astype(np.float64))

    def test_kl_without_a_tail_is_the_exact_kl_of_the_kept_tokens(
        self, made: tuple[Path, np.ndarray, list[np.ndarray]]
    ) -> None:
        path, tokens, rows = made
        base = LlamaBaseFile.open(path)
        record, _ = chunk_record(base, 0, tokens[0], (N_VOCAB, 0, 4))
        quant = rows[0] + np.random.default_rng(3).normal(0, 0.3, rows[0].shape).astype(np.float32)
        lower, gap = kl_rows(record, normalize(quant, record.top_ids))
        kept = _kept_logprobs(rows[0])
        log_z = np.log(np.nansum(np.exp(kept), axis=1))
        q = true_logprobs(quant)
        llama = np.nansum(np.exp(kept) * (kept - q), axis=1)  # llama-perplexity's sum
        # the record is the kept tokens normalized: KL = llama's sum / Z - log Z, Z = Σ kept p
        # (to float32 rounding of the kernels; llama's sum itself is ~1e-3 away in relative terms)
        assert np.allclose(lower + gap, llama / np.exp(log_z) - log_z, rtol=1e-5, atol=0)
        assert (gap == 0).all()

    def test_kl_with_a_tail_takes_back_the_left_out_mass(self, tmp_path: Path) -> None:
        """Rows of 20,000 tokens, 19,600 of them just below the window (δ ≈ 3.6e-4 left out).
        The no-tail record's exact KL is about δ above llama-perplexity's sum; with a tail
        outside the top K, the tail estimate charges P(tail)·Q(left out)/Q(tail) (its draws'
        E[r] falls short of 1 by the quant's share on the left-out tokens), which lands the
        mean on llama's sum."""
        n_vocab, rng = 20_000, np.random.default_rng(5)
        logits = np.empty((ROWS, n_vocab), dtype=np.float32)
        logits[:, :20] = rng.normal(5, 1, (ROWS, 20))
        logits[:, 20:400] = rng.normal(-1.5, 1, (ROWS, 380))
        logits[:, 400:] = rng.normal(-9.6, 0.2, (ROWS, n_vocab - 400))
        tokens = rng.integers(3, n_vocab, (1, N_CTX)).astype(np.int32)
        path = tmp_path / "wide.kld"
        write_base_file(path, tokens, [logits], n_vocab)
        base = LlamaBaseFile.open(path)
        quant = logits + rng.normal(0, 0.02, logits.shape).astype(np.float32)
        q = true_logprobs(quant)
        decoded = base.rows(0, 0, ROWS).logprobs().astype(np.float64)
        kept = decoded > -16
        llama = np.where(kept, np.exp(decoded) * (decoded - q), 0).sum(axis=1)
        delta = 1 - np.where(kept, np.exp(decoded), 0).sum(axis=1)
        exact, _ = chunk_record(base, 0, tokens[0], (1000, 0, 8))
        no_tail = sum(kl_rows(exact, normalize(quant, exact.top_ids)))
        record, _ = chunk_record(base, 0, tokens[0], (20, 4096, 8))
        with_tail = sum(kl_rows(record, normalize(quant, record.top_ids)))
        outside = np.ones_like(kept)
        np.put_along_axis(outside, record.top_ids.astype(np.int64), False, axis=1)
        q_tail = np.where(outside, np.exp(q), 0).sum(axis=1)
        q_left_out = np.where(~kept, np.exp(q), 0).sum(axis=1)
        charged = np.exp(record.tail_logmass) * q_left_out / q_tail
        assert (no_tail - llama).mean() == pytest.approx(delta.mean(), rel=0.02)
        assert abs((with_tail - (no_tail - charged)).mean()) < 0.01 * delta.mean()
        assert abs((with_tail - llama).mean()) < 0.05 * delta.mean()


class TestBadInput:
    """Each bad file is one DataError (or VocabMismatchError) line naming it."""

    def test_not_this_format(self, tmp_path: Path) -> None:
        path = tmp_path / "model.gguf"
        path.write_bytes(b"GGUF" + bytes(100))
        with pytest.raises(DataError, match="not a llama-perplexity --kl-divergence-base file"):
            LlamaBaseFile.open(path)
        path.write_bytes(b"")
        with pytest.raises(DataError, match="not a llama-perplexity"):
            LlamaBaseFile.open(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(DataError, match="base file not found"):
            LlamaBaseFile.open(tmp_path / "absent.kld")

    def test_truncated(self, made: tuple[Path, np.ndarray, list[np.ndarray]]) -> None:
        path = made[0]
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 100])
        with pytest.raises(DataError, match=r"truncated .*; 2 chunks complete"):
            LlamaBaseFile.open(path)
        path.write_bytes(data[:14])
        with pytest.raises(DataError, match="truncated"):
            LlamaBaseFile.open(path)

    def test_trailing_bytes(self, made: tuple[Path, np.ndarray, list[np.ndarray]]) -> None:
        path = made[0]
        path.write_bytes(path.read_bytes() + bytes(6))
        with pytest.raises(DataError, match="6 bytes more than its header"):
            LlamaBaseFile.open(path)

    def test_corrupt_header_and_tokens(
        self, made: tuple[Path, np.ndarray, list[np.ndarray]]
    ) -> None:
        path = made[0]
        data = bytearray(path.read_bytes())
        bad = bytearray(data)
        bad[8:12] = np.int32(-5).tobytes()
        path.write_bytes(bytes(bad))
        with pytest.raises(DataError, match="corrupt .* header"):
            LlamaBaseFile.open(path)
        bad = bytearray(data)
        bad[20 + 4 * 5 : 24 + 4 * 5] = np.int32(N_VOCAB + 3).tobytes()
        path.write_bytes(bytes(bad))
        with pytest.raises(DataError, match="token 304 at place 5 is outside"):
            LlamaBaseFile.open(path).tokens()

    def test_vocabulary_differs(self, made: tuple[Path, np.ndarray, list[np.ndarray]]) -> None:
        base = LlamaBaseFile.open(made[0])
        with pytest.raises(VocabMismatchError, match="vocabulary of 302 tokens, but .* 301"):
            base.check_vocabulary(302, Path("q.gguf"))


def test_import_writes_every_chunk_and_digests_the_file(
    made: tuple[Path, np.ndarray, list[np.ndarray]], tmp_path: Path
) -> None:

    path, tokens, _ = made
    base = LlamaBaseFile.open(path)
    writer = BaselineWriter(tmp_path / "cache", "k", 3, N_CTX, ROWS, 32, 4)
    digest = hashlib.sha256()
    decoded = decoded_tokens(base.tokens(digest), BOS)
    done = [chunk for chunk, _ in import_chunks(base, writer, decoded, (32, 4, 4), digest)]
    entry = writer.finish({})
    assert done == [0, 1, 2]
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    alone, target = chunk_record(base, 2, decoded[2], (32, 4, 4))
    assert np.array_equal(entry.positions[entry.rows(2)].top_ids, alone.top_ids)
    assert np.array_equal(entry.target_logprob[entry.rows(2)], target)
    assert (entry.tokens[:, 0] == BOS).all()


@dataclass(frozen=True)
class Tiny:
    """A base file written from the tiny F32 model's logits, and what its tests use."""

    path: Path
    models: Path
    text: Path
    quant: str  # the noisy tiny model, the quant compared
    folder: Path  # the tiny GGUFs
    tmp: Path


class TestCli:
    """`ggflip kld --llama-base` and `baseline import` on tiny GGUFs: the base file written from
    the tiny F32 model's own logits, so the run must match `kld` with that model as baseline."""

    CTX = 64

    @pytest.fixture
    def tiny(self, tmp_path: Path, tiny_gguf_dir: Path) -> Tiny:
        """The base file, a models.toml of the same comparison and its text."""
        from ggflip.backends.base import ScoreRequest
        from ggflip.backends.llama import LlamaBackendFactory
        from ggflip.config.models_toml import LlamaSettings, ModelSpec
        from ggflip.corpus.texts import chunk_tokens

        text = tmp_path / "cats.txt"
        text.write_text(" ".join(f"the cat {i % 7} sat on mat {i % 11}" for i in range(60)))
        settings = LlamaSettings(n_ctx=self.CTX, n_seq_max=1, n_threads=1)
        backend = LlamaBackendFactory().open(
            ModelSpec("F32", tiny_gguf_dir / "base.gguf", settings)
        )
        try:
            stored = backend.tokenize(text.read_text(), add_bos=True)
            chunks = chunk_tokens(stored, backend.tokenize("", add_bos=True), self.CTX, 3, "t")
            positions = tuple(range(self.CTX // 2, self.CTX - 1))
            rows = [
                backend.logits([ScoreRequest(tuple(map(int, c)), positions)])[0] for c in chunks
            ]
            n_vocab = backend.n_vocab
        finally:
            backend.close()
        as_stored = np.asarray(stored[: 3 * self.CTX], dtype=np.int32).reshape(3, self.CTX)
        path = tmp_path / "f32.kld"
        write_base_file(path, as_stored, rows, n_vocab)
        models = tmp_path / "models.toml"
        models.write_text(
            "[llama]\nn_threads = 1\n[sets.tiny]\n"
            f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "F32" }}\n'
            f'quants = [{{ path = "{tiny_gguf_dir / "noisy.gguf"}", label = "noisy" }}]\n'
        )
        return Tiny(path, models, text, str(tiny_gguf_dir / "noisy.gguf"), tiny_gguf_dir, tmp_path)

    def test_llama_base_run_matches_the_run_with_the_model(
        self, tiny: Tiny, capsys: pytest.CaptureFixture[str]
    ) -> None:

        path, models, text = tiny.path, tiny.models, tiny.text
        cache = str(tiny.tmp / "cache")
        args = ["kld", "--llama-base", str(path), "--quant", tiny.quant, "--cache-dir", cache]
        args += ["--json"]
        assert main([*args, "--models", str(models)]) == 0
        ours = json.loads(capsys.readouterr().out)
        assert main(["kld", "--models", str(models), "--text", str(text), "--ctx", "64",
                     "--chunks", "3", "--no-cache", "--json"]) == 0  # fmt: skip
        theirs = json.loads(capsys.readouterr().out)
        mine, model = ours["quants"][0], theirs["quants"][0]
        assert ours["n_chunks"] == 3 and ours["tokens_scored"] == theirs["tokens_scored"] == 93
        assert mine["ppl"] == pytest.approx(model["ppl"], rel=1e-9)  # the same quant decodes
        assert mine["same_top"] == model["same_top"]
        # the uint16 codes move each log-prob by at most half a step (16/65535/2 = 1.2e-4 nats)
        assert ours["baseline"]["ppl"] == pytest.approx(theirs["baseline"]["ppl"], rel=1.3e-4)
        assert mine["kl_mean"] == pytest.approx(model["kl_mean"], rel=1e-4)  # 4e-6 measured
        assert ours["baseline"]["computed_with"]["llama"]["computed_by"].startswith("llama-perp")
        # a second run reads the imported pack from the cache
        assert main([*args, "--models", str(models)]) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["quants"][0]["kl_mean"] == mine["kl_mean"]
        assert "importing" not in capsys.readouterr().err

    def test_import_then_info(self, tiny: Tiny, capsys: pytest.CaptureFixture[str]) -> None:

        path, pack = tiny.path, tiny.tmp / "f32.pack"
        assert main(["baseline", "import", str(path), "--model", tiny.quant, "-o", str(pack)]) == 0
        capsys.readouterr()
        assert main(["baseline", "info", str(pack), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["mode"] == "corpus" and info["counts"]["scored_positions"] == 93
        assert info["baseline"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    def test_bad_inputs_are_one_line(self, tiny: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
        from tests.tiny_gguf import CHAT_VOCAB, write_tiny_gguf

        path, text, quant, tmp_path = tiny.path, tiny.text, tiny.quant, tiny.tmp
        other = str(tiny.folder / "othervocab.gguf")
        bigger = str(write_tiny_gguf(tmp_path / "chat.gguf", vocab=CHAT_VOCAB))
        cache = tmp_path / "cache"
        cases = [
            (["--llama-base", str(text), "--quant", quant], 5, "not a llama-perplexity"),
            (["--llama-base", str(path), "--quant", bigger], 6, "was computed with"),
            (["--llama-base", str(path), "--quant", quant, "--text", str(text)], 2, "drop --text"),
            (["--llama-base", str(path)], 2, "needs a quant"),
            (["--llama-base", str(path), "--quant", quant, "--no-cache"], 2, "drop --no-cache"),
        ]
        for extra, code, words in cases:
            result = main(["kld", "--cache-dir", str(cache), "--models", str(tmp_path / "no.toml"),
                           *extra])  # fmt: skip
            err = capsys.readouterr().err.strip().splitlines()
            assert result == code, (extra, result, err)
            assert err[-1].startswith("ggflip: error: ") and words in err[-1], err
        assert not list((cache / "llama-base").glob("*.pack"))
        # a second quant with the first's vocabulary size but other tokens
        both = ["--llama-base", str(path), "--quant", quant, "--quant", other]
        assert main(["kld", "--cache-dir", str(cache), *both]) == 5
        assert "its tokenizer" in capsys.readouterr().err.strip().splitlines()[-1]
