"""The TUI's corpus mode (KLD run screen) driven headless with Pilot on the fake backend."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select, Static

from ggflip.backends.fake import FakeBackendFactory
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import ChunkScored, KldFinished, KldReport
from ggflip.corpus.setup import resolve_kld_spec
from ggflip.tui.corpus_live import KL_SHADES, kl_style
from ggflip.tui.corpus_view import CORPUS_TASK, KldOptions, KldScreen
from ggflip.tui.setup import SetupScreen
from ggflip.tui.views import ErrorScreen
from tests.tui_helpers import FAKE_MODELS, fake_app, run_async, settle, write_fake_set

TEXT = " ".join(f"word{(i * 7) % 41} thing{i % 13} item{(i * 3) % 29}" for i in range(120))
CTX = 32


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_fake_set(tmp_path)
    (tmp_path / "corpus.txt").write_text(TEXT + "\n")
    return tmp_path


def kld_options(chunks: int | None = 4) -> KldOptions:
    """Corpus mode on the fake set: 4 chunks of 32 tokens, no cache."""
    return KldOptions(texts=(Path("corpus.txt"),), ctx=CTX, chunks=chunks, no_cache=True)


def engine_events(options: KldOptions) -> list[object]:
    """The same corpus run through the engine directly, for the expected values."""
    return list(run_kld(resolve_kld_spec(options), FakeBackendFactory(FAKE_MODELS)))


def kld_screen(app: object) -> KldScreen:
    screens = [s for s in app.screen_stack if isinstance(s, KldScreen)]  # type: ignore[attr-defined]
    assert len(screens) == 1
    return screens[0]


def _rows(table: DataTable) -> dict[str, list[str]]:
    rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
    return {row[0]: row for row in rows}


@run_async
async def test_statistics_table_equals_the_engine_report(fake_dir: Path) -> None:
    """`ggflip tui --text`: each quant's row shows the engine's llama-perplexity statistics."""
    report = next(e.report for e in engine_events(kld_options()) if isinstance(e, KldFinished))
    assert isinstance(report, KldReport) and report.baseline is not None
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = kld_options()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = kld_screen(app)
        assert screen.live is not None and screen.live.state == "finished"
        rows = _rows(screen.query_one("#summary", DataTable))
        assert set(rows) == {"F16 (base)", "Q8_0", "Q2_K"}
        b = report.baseline
        assert rows["F16 (base)"][1] == f"{b.ppl:.3f}±{b.ppl_unc:.3f}"
        for quant in report.quants:
            s, row = quant.stats, rows[quant.label]
            assert row[1] == f"{s.ppl:.3f}±{s.ppl_unc:.3f}"
            assert row[2] == f"{s.ppl_ratio:.4f}±{s.ppl_ratio_unc:.4f}"
            assert row[3] == f"{s.kl_mean:.5f}±{s.kl_mean_unc:.5f}"
            assert row[4:7] == [
                f"{s.kl_median:.4f}",
                f"{s.kl_percentiles['kl_p99']:.4f}",
                f"{s.kl_max:.3f}",
            ]
            assert row[7] == f"{100 * s.same_top:.2f}±{100 * s.same_top_unc:.2f}%"
            assert row[8] == f"{100 * s.dp_rms:.2f}%"
            assert row[9] == "4/4"
            # The running statistics (kld_stats over the chunks received) agree with the engine's
            # summary.
            model = screen.live.models[quant.label]
            final, model.summary = model.summary, None
            running = screen.live.stats(quant.label)
            model.summary = final
            assert (
                running is not None
                and running.kl_mean == pytest.approx(s.kl_mean)
                and running.same_top == s.same_top
            )
            assert running.ppl_ratio == pytest.approx(s.ppl_ratio)


def _shades(text: Text) -> list[tuple[str, str]]:
    """(piece, style) of every span of the per-token view."""
    return [(text.plain[span.start : span.end], str(span.style)) for span in text.spans]


@run_async
async def test_per_token_view_shades_the_chunk_by_kl(fake_dir: Path) -> None:
    """The view shows the selected chunk's text, each scored token styled by the selected quant's
    KL; n/p and [/] navigate."""
    chunks = {
        (e.label, e.chunk): e for e in engine_events(kld_options()) if isinstance(e, ChunkScored)
    }
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = kld_options()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = kld_screen(app)
        assert screen.selected == "Q2_K" and screen.chunk == 0  # followed the last quant scored

        def expect(label: str, chunk: int) -> None:
            event = chunks[(label, chunk)]
            assert event.kl is not None
            text = screen.query_one("#tokens", Static).content
            assert isinstance(text, Text)
            first = event.first_scored + 1
            assert text.plain == "".join(event.pieces[1:])
            styled = [(piece, style) for piece, style in _shades(text) if style != "dim"]
            shaded = [
                (p, kl_style(float(k)))
                for p, k in zip(event.pieces[first:], event.kl)
                if kl_style(float(k))
            ]
            assert styled == shaded
            title = str(screen.query_one("#token-title", Static).content)
            assert f"Per-token KL of {label} · chunk {chunk + 1}/4" in title

        expect("Q2_K", 0)
        q2 = chunks[("Q2_K", 0)].kl
        assert q2 is not None and len({kl_style(float(k)) for k in q2}) >= 2, (
            "the noisy quant's KL must span shades"
        )
        await pilot.press("n", "n")
        expect("Q2_K", 2)
        await pilot.press("p")
        expect("Q2_K", 1)
        await pilot.press("left_square_bracket")
        assert screen.selected == "Q8_0"
        expect("Q8_0", 1)
        q8 = chunks[("Q8_0", 1)].kl
        assert q8 is not None and float(q8.mean()) < float(chunks[("Q2_K", 1)].kl.mean())  # type: ignore[union-attr]


def test_kl_shades_are_ordered() -> None:
    """Each shade covers KL up to its bound: a larger KL never gets an earlier shade."""
    bounds = [bound for bound, _ in KL_SHADES]
    assert bounds == sorted(bounds)
    styles = [style for _, style in KL_SHADES]
    values = [0.0, 0.005, 0.02, 0.1, 0.5, 3.0]
    assert [styles.index(kl_style(v)) for v in values] == list(range(len(KL_SHADES)))


@run_async
async def test_missing_text_shows_the_error_screen(fake_dir: Path) -> None:
    """A GgflipError from the worker (here: no such text) becomes the error screen, not a crash."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = KldOptions(texts=(Path("nope.txt"),), ctx=CTX, no_cache=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ErrorScreen)
        assert "nope.txt" in app.screen.message and "not found" in app.screen.message


@run_async
async def test_export_writes_the_kld_json(fake_dir: Path) -> None:
    """e writes the `ggflip kld --json` document of the finished run."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = kld_options()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = kld_screen(app)
        await pilot.press("e")
        await pilot.pause()
        assert screen.live is not None and screen.live.report is not None
        assert (
            fake_dir / "ggflip-kld-fake.json"
        ).read_text() == screen.live.report.to_json() + "\n"


@run_async
async def test_per_text_table_equals_the_engine_categories(fake_dir: Path) -> None:
    """`ggflip tui --text folder/`: one row per text, each the engine's statistics of that text
    for the selected quant; the token view names the chunk's text; e writes Markdown too."""
    folder = fake_dir / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    (folder / "b.txt").write_text(" ".join(f"other{i % 17} w{i % 5}" for i in range(60)))
    options = KldOptions(texts=(folder,), ctx=CTX, no_cache=True)
    report = next(e.report for e in engine_events(options) if isinstance(e, KldFinished))
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = options
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        screen = kld_screen(app)
        assert screen.has_class("categories") and screen.selected == "Q2_K"
        rows = _rows(screen.query_one("#categories", DataTable))
        q2 = next(q for q in report.quants if q.label == "Q2_K")
        assert list(rows) == ["a.txt", "b.txt"] == [c.name for c in q2.by_category]
        for category, text in zip(q2.by_category, report.texts):
            row = rows[category.name]
            s = category.stats
            assert row[1] == f"{text.n_chunks}/{text.n_chunks}"
            assert row[5] == f"{s.kl_mean:.5f}±{s.kl_mean_unc:.5f}"
            assert row[8] == f"{100 * s.same_top:.2f}±{100 * s.same_top_unc:.2f}%"
        b = report.texts[1]
        for _ in range(b.first_chunk):
            await pilot.press("n")
        title = str(screen.query_one("#token-title", Static).content)
        assert f"b.txt chunk 1/{b.n_chunks}" in title
        await pilot.press("e")
        await pilot.pause()
        assert "## b.txt:" in (fake_dir / "ggflip-kld-fake.md").read_text()


def test_an_interrupted_kld_reports_the_tokens_it_scored(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C after the baseline and part of the first quant: the partial report counts the
    baseline's scored tokens, not 0."""

    import ggflip.cli.kld as cli_kld
    from ggflip.cli.main import main

    def interrupted(spec: object, factory: object):  # type: ignore[no-untyped-def]
        for event in run_kld(spec, FakeBackendFactory(FAKE_MODELS)):  # type: ignore[arg-type]
            yield event
            if isinstance(event, ChunkScored) and event.role == "quant" and event.chunk == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(cli_kld, "run_kld", interrupted)
    code = main(["kld", "--text", "corpus.txt", "--ctx", str(CTX), "--chunks", "4", "--json",
                 "--no-cache"])  # fmt: skip
    assert code == 130
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is False and report["quants"] == []
    assert report["n_chunks"] == 4 and report["tokens_scored"] == 4 * (CTX - 1 - CTX // 2)


@run_async
async def test_setup_starts_corpus_mode_and_esc_comes_back_to_it(fake_dir: Path) -> None:
    """The setup view's task "kld" runs corpus mode on the text named in Data (Limit: chunks per
    text); Esc shows the corpus setup again with those values, not the multiple-choice one."""
    (fake_dir / "long.txt").write_text(" ".join(f"w{i % 97} t{i % 13}" for i in range(600)))
    options = dataclasses.replace(
        write_fake_set(fake_dir), task=CORPUS_TASK, data="long.txt", limit=1
    )
    app = fake_app(options, fake_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = kld_screen(app)
        assert screen.live is not None and screen.live.state == "finished"
        assert screen.options.texts == (Path("long.txt"),) and screen.live.n_chunks == 1
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SetupScreen)
        assert app.screen.query_one("#task", Select).value == CORPUS_TASK
        assert app.screen.query_one("#data", Input).value == "long.txt"
        assert app.screen.query_one("#limit", Input).value == "1"


@run_async
async def test_esc_from_tui_text_opens_the_corpus_setup(fake_dir: Path) -> None:
    """`ggflip tui --text`: Esc goes to the setup of corpus mode with the run's text and chunks
    (it used to show the multiple-choice setup with all questions)."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = kld_options()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SetupScreen)
        assert app.screen.query_one("#task", Select).value == CORPUS_TASK
        assert app.screen.query_one("#data", Input).value == "corpus.txt"
        assert app.screen.query_one("#limit", Input).value == "4"
        await pilot.press("ctrl+s")  # and runs it again as it was
        await settle(pilot)
        screen = kld_screen(app)
        assert screen.live is not None and screen.live.state == "finished"
        assert screen.options.chunks == 4 and screen.options.ctx == CTX


@run_async
async def test_export_of_a_partial_run_reads_nothing_again(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """e on a cancelled corpus run writes the fold's partial report without resolving the
    options again (no models.toml or text read on the UI thread)."""
    app = fake_app(write_fake_set(fake_dir), fake_dir)
    app.kld = kld_options()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = kld_screen(app)
        assert screen.live is not None
        screen.live.report = None  # as if the run had stopped before its end
        screen.live.state = "cancelled"

        def refused(options: object) -> None:
            raise AssertionError("export resolved the options again")

        monkeypatch.setattr("ggflip.corpus.setup.resolve_kld_spec", refused)
        monkeypatch.setattr("ggflip.tui.corpus_view.resolve_kld_spec", refused)
        await pilot.press("e")
        await pilot.pause()
    written = json.loads((fake_dir / "ggflip-kld-fake.json").read_text())
    assert written["complete"] is False and [q["label"] for q in written["quants"]] == [
        "Q8_0",
        "Q2_K",
    ]
