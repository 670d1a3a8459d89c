"""Corpus categories: several texts in one `ggflip kld` run, each chunked on its own, with every
statistic per text equal to a run on that text alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from ggflip.backends.fake import FakeBackendFactory
from ggflip.config.models_toml import ModelSet
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import ChunkScored, CorpusReady, KldFinished, KldReport
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.texts import CorpusText, load_texts
from ggflip.errors import DataError, UsageError
from ggflip.reports.corpus import render_kld_markdown, render_kld_report
from ggflip.runs.events import BaselineFromCache

CTX = 32
# 90 words + BOS = 91 tokens: 2 chunks of 32 and 27 tokens left over, which a run that joined the
# texts would carry into the next text's first chunk.
PROSE = CorpusText("prose.txt", "prose.txt", " ".join(f"word{(i * 7) % 41}" for i in range(90)))
CODE = CorpusText("code.py", "code.py", " ".join(f"item{(i * 3) % 29} x{i % 5}" for i in range(80)))


def _run(fake_set: ModelSet, factory: FakeBackendFactory, texts: tuple, **kwargs: object) -> list:
    spec = KldSpec(fake_set, texts, ctx=CTX, top_k=16, tail_samples=8, **kwargs)  # type: ignore[arg-type]
    return list(run_kld(spec, factory))


def _report(events: list) -> KldReport:
    return next(e.report for e in events if isinstance(e, KldFinished))


def _quant(report: dict, label: str) -> dict:
    return next(q for q in report["quants"] if q["label"] == label)


class TestEachCategoryIsItsTextAlone:
    """A category's numbers are exactly those of `ggflip kld` on that one text."""

    @pytest.fixture
    def reports(self, fake_set: ModelSet, fake_factory: FakeBackendFactory) -> tuple[dict, ...]:
        both = _report(_run(fake_set, fake_factory, (PROSE, CODE))).to_dict()
        prose = _report(_run(fake_set, fake_factory, (PROSE,))).to_dict()
        code = _report(_run(fake_set, fake_factory, (CODE,))).to_dict()
        return both, prose, code

    def test_every_statistic_matches_the_single_text_run(self, reports: tuple[dict, ...]) -> None:
        both, *alone = reports
        for label in ("self", "Q8_0", "Q2_K"):
            categories = _quant(both, label)["by_category"]
            assert [c["name"] for c in categories] == ["prose.txt", "code.py"]
            for category, single in zip(categories, alone):
                expected = {k: v for k, v in _quant(single, label).items() if k not in _NOT_STATS}
                assert {k: category[k] for k in expected} == expected  # exact, not approximate

    def test_baseline_perplexity_per_text(self, reports: tuple[dict, ...]) -> None:
        both, *alone = reports
        got = [(c["ppl"], c["ppl_unc"]) for c in both["baseline"]["by_category"]]
        assert got == [(r["baseline"]["ppl"], r["baseline"]["ppl_unc"]) for r in alone]

    def test_chunks_never_cross_files(self, reports: tuple[dict, ...]) -> None:
        both, prose, code = reports
        assert (prose["n_chunks"], code["n_chunks"]) == (2, 5)  # 91 // 32, 161 // 32
        assert both["n_chunks"] == 7 and both["tokens_scored"] == 7 * (CTX - 1 - CTX // 2)
        assert [(t["first_chunk"], t["n_chunks"]) for t in both["texts"]] == [(0, 2), (2, 5)]
        assert both["n_text_tokens"] == prose["n_text_tokens"] + code["n_text_tokens"] == 91 + 161

    def test_the_whole_corpus_pools_the_tokens(self, reports: tuple[dict, ...]) -> None:
        both, prose, code = reports
        q2, a, b = (_quant(r, "Q2_K") for r in (both, prose, code))
        n_a, n_b = a["n_tokens"], b["n_tokens"]
        assert q2["n_tokens"] == n_a + n_b
        for key in ("kl_mean", "same_top", "dp_mean", "acceptance_mean", "kl_tail_estimate"):
            assert q2[key] == pytest.approx((n_a * a[key] + n_b * b[key]) / (n_a + n_b), rel=1e-12)
        assert q2["kl_max"] == max(a["kl_max"], b["kl_max"])

    def test_chunks_caps_each_text(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        events = _run(fake_set, fake_factory, (PROSE, CODE), chunks=3)
        ready = next(e for e in events if isinstance(e, CorpusReady))
        assert [t.n_chunks for t in ready.texts] == [2, 3] and ready.n_chunks == 5


# whole run only
_NOT_STATS = {
    "label", "path", "seconds", "by_category", "equivalence", "chunk_kl", "memory",
    "memory_unknown", "settings", "by_position", "imatrix",
}


class TestTexts:
    """What `--text` accepts: files, folders of files, and what it refuses, naming the file."""

    def test_a_folder_is_one_category_per_file(self, tmp_path: Path) -> None:
        (tmp_path / "b.txt").write_text("bee text\n")
        (tmp_path / "a.md").write_text("aye text")
        (tmp_path / ".hidden").write_text("never read")
        (tmp_path / "sub").mkdir()
        texts = load_texts([tmp_path])
        assert [(t.name, t.text) for t in texts] == [("a.md", "aye text"), ("b.txt", "bee text")]

    def test_same_name_in_two_folders_is_named_by_its_path(self, tmp_path: Path) -> None:
        for folder in ("x", "y"):
            (tmp_path / folder).mkdir()
            (tmp_path / folder / "t.txt").write_text(f"text of {folder}")
        texts = load_texts([tmp_path / "x" / "t.txt", tmp_path / "y"])
        assert [t.name for t in texts] == [str(tmp_path / "x" / "t.txt"), str(tmp_path / "y/t.txt")]

    def test_empty_file_is_refused_by_name(self, tmp_path: Path) -> None:
        (tmp_path / "good.txt").write_text("some words")
        (tmp_path / "empty.txt").write_text("\n")
        with pytest.raises(DataError, match=r"empty\.txt: empty text file"):
            load_texts([tmp_path / "good.txt", tmp_path / "empty.txt"])

    def test_a_file_given_twice_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "t.txt").write_text("words")
        with pytest.raises(UsageError, match="given twice"):
            load_texts([tmp_path / "t.txt", tmp_path])

    def test_empty_folder_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(DataError, match="no text files"):
            load_texts([tmp_path])

    def test_short_text_is_refused_by_name_before_scoring(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        short = CorpusText("short.txt", "dir/short.txt", "only a few words")
        spec = KldSpec(fake_set, (PROSE, short), ctx=CTX)
        seen: list[object] = []
        with pytest.raises(DataError, match=r"dir/short\.txt: 5 tokens, fewer than one chunk"):
            for event in run_kld(spec, fake_factory):
                seen.append(event)
        assert not any(isinstance(e, ChunkScored) for e in seen)


class TestCacheKey:
    """The baseline cache is keyed by the texts, in order."""

    def test_another_set_of_texts_misses_the_cache(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        def cached(texts: tuple) -> bool:
            events = _run(fake_set, fake_factory, texts, cache_dir=tmp_path)
            return any(isinstance(e, BaselineFromCache) for e in events)

        assert not cached((PROSE, CODE))
        assert cached((PROSE, CODE))
        assert not cached((PROSE,))
        assert not cached((CODE, PROSE))
        renamed = (CorpusText("other.txt", "other.txt", PROSE.text), CODE)
        assert cached(renamed)  # the key is the content; names come from the run

    def test_categories_from_the_cache_equal_the_scored_ones(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path
    ) -> None:
        first = _report(_run(fake_set, fake_factory, (PROSE, CODE), cache_dir=tmp_path))
        again = _report(_run(fake_set, fake_factory, (PROSE, CODE), cache_dir=tmp_path))
        assert again.baseline is not None and again.baseline.from_cache
        assert again.texts == first.texts
        assert [q.by_category for q in again.quants] == [q.by_category for q in first.quants]


class TestRendering:
    """Terminal tables and Markdown show every statistic per text."""

    @pytest.fixture
    def report(self, fake_set: ModelSet, fake_factory: FakeBackendFactory) -> KldReport:
        return _report(_run(fake_set, fake_factory, (PROSE, CODE)))

    def test_markdown_has_a_section_per_text(self, report: KldReport) -> None:
        text = render_kld_markdown(report)
        for heading in ("## Whole corpus", "## prose.txt: 2 chunks", "## code.py: 5 chunks"):
            assert heading in text
        assert text.count("| Mean KLD |") == 3
        q2 = next(c for c in report.quants[2].by_category if c.name == "code.py")
        assert f"{q2.stats.kl_mean:.6f} ± {q2.stats.kl_mean_unc:.6f}" in text

    def test_terminal_tables_per_text(self, report: KldReport) -> None:
        console = Console(width=200, record=True)
        render_kld_report(report, console)
        out = console.export_text()
        assert "llama-perplexity statistics, code.py: 5 chunks" in out
        assert out.count("Mean KLD") == 3

    def test_single_text_has_no_category_sections(
        self, fake_set: ModelSet, fake_factory: FakeBackendFactory
    ) -> None:
        report = _report(_run(fake_set, fake_factory, (PROSE,)))
        assert render_kld_markdown(report).count("| Mean KLD |") == 1
        document = json.loads(report.to_json())
        assert [c["name"] for c in document["quants"][0]["by_category"]] == ["prose.txt"]


class TestCli:
    """`ggflip kld --text` repeated or a folder, on tiny GGUFs loaded by the real llama.cpp."""

    @pytest.fixture
    def tiny(self, tmp_path: Path, tiny_gguf_dir: Path) -> Path:
        lines = [
            "[llama]",
            "n_threads = 1",
            "[sets.tiny]",
            f'baseline = {{ path = "{tiny_gguf_dir / "base.gguf"}", label = "F32" }}',
            f'quants = [{{ path = "{tiny_gguf_dir / "noisy.gguf"}", label = "noisy" }}]',
        ]
        models = tmp_path / "models.toml"
        models.write_text("\n".join(lines) + "\n")
        folder = tmp_path / "texts"
        folder.mkdir()
        (folder / "cats.txt").write_text(" ".join(f"the cat {i % 7} sat" for i in range(60)))
        (folder / "mats.txt").write_text(" ".join(f"on mat number {i % 11}" for i in range(60)))
        return models

    def _kld(self, models: Path, *args: str) -> int:
        from ggflip.cli.main import main

        return main(["kld", "--models", str(models), "--ctx", "64", "--no-cache", *args])

    def test_folder_equals_each_file_alone(
        self, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        folder = tmp_path / "texts"
        markdown = tmp_path / "report.md"
        assert self._kld(tiny, "--text", str(folder), "--json", "--markdown", str(markdown)) == 0
        both = json.loads(capsys.readouterr().out)
        assert [t["name"] for t in both["texts"]] == ["cats.txt", "mats.txt"]
        for i, name in enumerate(("cats.txt", "mats.txt")):
            assert self._kld(tiny, "--text", str(folder / name), "--json") == 0
            alone = json.loads(capsys.readouterr().out)["quants"][0]
            category = both["quants"][0]["by_category"][i]
            assert category["name"] == name
            assert {k: category[k] for k in ("kl_mean", "ppl", "same_top", "kl_p99")} == {
                k: alone[k] for k in ("kl_mean", "ppl", "same_top", "kl_p99")
            }
        assert "## mats.txt:" in markdown.read_text()

    def test_short_category_is_one_error_line_naming_it(
        self, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        short = tmp_path / "short.txt"
        short.write_text("just a few words")
        code = self._kld(tiny, "--text", str(tmp_path / "texts"), "--text", str(short))
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 5 and captured.out == ""
        assert lines[-1].startswith(f"ggflip: error: {short}: ")
        assert "fewer than one chunk" in lines[-1]
        empty = tmp_path / "texts" / "empty.txt"
        empty.write_text("")
        assert self._kld(tiny, "--text", str(tmp_path / "texts")) == 5
        assert capsys.readouterr().err.strip().splitlines() == [
            f"ggflip: error: {empty}: empty text file; every text must hold at least one chunk"
        ]
