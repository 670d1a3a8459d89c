"""One metric registered in one place shows in every mode's JSON, tables and TUI columns."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from textual.pilot import Pilot

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import ChunkScored
from ggflip.corpus.setup import KldOptions
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.texts import CorpusText
from ggflip.errors import UsageError
from ggflip.generate.engine import run_generation
from ggflip.generate.setup import GenOptions
from ggflip.generate.spec import GenSpec
from ggflip.reports import choice, corpus, generation, pages
from ggflip.scoring import formats, metrics
from ggflip.tasks.generation import GEN_TASKS, load_items
from ggflip.tasks.questions import QuestionSet
from ggflip.tui import choice_cells, columns, corpus_tables, gen_cells, help
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.run_widgets import ModelTable
from tests.tui_helpers import fake_app, run_async, settle, start_run, write_fake_set

NAME, LABEL = "kl_p75", "KL p75 (test)"
DATA = Path(__file__).parent / "data"


def _p75(arrays: object) -> float:
    return float(np.quantile(arrays.kl, 0.75))  # type: ignore[attr-defined]


@pytest.fixture
def p75() -> Iterator[metrics.Metric]:
    """The 75th percentile of per-row KL, registered for every mode, removed afterwards."""
    entry = metrics.register_metric(
        NAME,
        label=LABEL,
        short="KL p75",
        unit="nats",
        higher_is_better=False,
        format="kl",
        aggregation="75th percentile",
        modes=metrics.MODES,
        legend="75th percentile of the per-row KL (a test's metric)",
        kernel=_p75,
        column=True,
    )
    yield entry
    metrics.unregister_metric(NAME)


def _text(render: object) -> str:
    console = Console(width=400, record=True, file=io.StringIO())
    render(console)  # type: ignore[operator]
    return console.export_text()


def _expected(kl: list[float]) -> float:
    """The 75th percentile by hand: linear interpolation at 0.75·(n - 1) of the sorted values."""
    ordered = sorted(kl)
    at = 0.75 * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (at - low) * (ordered[high] - ordered[low])


def test_multiple_choice(
    p75: metrics.Metric,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    report = list(run_comparison(RunSpec(fake_set, fake_questions), fake_factory))[-1].report
    document = report.to_dict()
    for quant in document["quants"]:
        assert quant[NAME] == pytest.approx(_expected([r["kl"] for r in quant["rows"]]))
    assert list(document["quants"][-1])[-1] == NAME  # after every typed field
    q2 = document["quants"][-1]
    cell = p75.cell(q2[NAME])
    assert q2[NAME] > 0.1 and cell != formats.DASH
    assert LABEL in _text(lambda c: choice.render_report(report, c))
    assert f" {cell} " in _text(lambda c: choice.render_report(report, c))
    md = choice.render_markdown(report)
    assert f"| {LABEL} |" in md and f"| {cell} |" in md
    page = pages.render_html(document)
    assert f"<th>{LABEL}</th>" in page and f"<td>{cell}</td>" in page
    assert pages.report_from_dict(document).quants[-1].extra[NAME] == q2[NAME]
    assert ("KL p75", 8) in choice_cells.column_pairs()
    assert columns.appended_cells("choice", choice_cells.OWN_COLUMNS, q2) == [cell]
    assert (LABEL, p75.legend) in choice.legend_terms()


def test_corpus(p75: metrics.Metric, fake_set: ModelSet, fake_factory: FakeBackendFactory) -> None:
    text = " ".join(f"word{(i * 7) % 41} thing{i % 13}" for i in range(150))
    spec = KldSpec(
        fake_set, (CorpusText("t", "t", text),), ctx=32, cache_dir=Path(tempfile.mkdtemp())
    )
    events = list(run_kld(spec, fake_factory))
    report = events[-1].report  # type: ignore[attr-defined]
    token_kl = {
        label: [float(k) for e in events if isinstance(e, ChunkScored) and e.label == label
                for k in (e.kl if e.kl is not None else [])]
        for label in ("self", "Q8_0", "Q2_K")
    }
    document = report.to_dict()
    for quant in document["quants"]:
        assert quant[NAME] == pytest.approx(_expected(token_kl[quant["label"]]))
        assert quant["by_category"][0][NAME] == pytest.approx(quant[NAME])
    cell = p75.cell(document["quants"][-1][NAME])
    assert LABEL in _text(lambda c: corpus.render_kld_report(report, c))
    assert f" {cell} " in _text(lambda c: corpus.render_kld_report(report, c))
    assert f"| {cell} |" in corpus.render_kld_markdown(report)
    assert f"<th>{LABEL}</th>" in corpus.render_kld_html(report)
    assert ("KL p75", 8) in corpus_tables.kld_columns()
    final = report.quants[-1].to_dict()
    assert columns.appended_cells("corpus", corpus_tables.OWN_COLUMNS, final) == [cell]


def test_generation(
    p75: metrics.Metric, fake_set: ModelSet, fake_factory: FakeBackendFactory
) -> None:
    items = tuple(load_items(GEN_TASKS["prompts"], str(DATA / "gen-tui-prompts.jsonl")))
    spec = GenSpec(fake_set, GEN_TASKS["prompts"], items, "p.jsonl", max_new_tokens=8)
    report = list(run_generation(spec, fake_factory))[-1].report  # type: ignore[attr-defined]
    document = report.to_dict()
    for quant, summary in zip(document["quants"], report.quants):
        kl = [float(k) for row in summary.rows for k in row.token_kl]
        assert quant[NAME] == pytest.approx(_expected(kl))
    keys = list(document["quants"][-1])
    assert keys.index(NAME) == keys.index("rows") - 1
    cell = p75.cell(document["quants"][-1][NAME])
    assert f" {cell} " in _text(lambda c: generation.render_gen_report(report, c))
    assert f"| {LABEL} |" in generation.render_gen_markdown(document)
    assert f"<td>{cell}</td>" in generation.render_gen_html(document)
    assert ("KL p75", 8) in gen_cells.gen_columns()
    assert columns.appended_cells("generate", gen_cells.OWN_COLUMNS, report.quants[-1]) == [cell]


def test_the_help_legend_lists_it_once(p75: metrics.Metric) -> None:
    assert help.legend_rows("generate").count(("KL p75", p75.legend)) == 1


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(UsageError, match="did you mean 'kl_mean'"):
        metrics.metric("kl_maen")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register_metric(
            "kl_mean", label="x", unit="nats", higher_is_better=False, format="kl",
            aggregation="mean", modes=("choice",), legend="x",
        )


def test_kl_shows_significant_digits() -> None:
    assert formats.sig(1e-6) == "1.00e-6"  # a floor of 1e-6, not 0.0000
    assert formats.sig(0.012345) == "0.0123"
    assert formats.sig(0.99951) == "1.00"
    assert formats.sig_pm(1.20558, 0.02564) == "1.206 ± 0.026"


@pytest.mark.parametrize("mode", ["choice", "corpus", "generate"])
@run_async
async def test_every_run_screen_shows_it(
    p75: metrics.Metric, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mode's run screen builds its model table from the registry: the new column, and the
    finished quant's value in it."""
    monkeypatch.chdir(tmp_path)
    app = fake_app(write_fake_set(tmp_path), tmp_path)
    if mode == "corpus":
        (tmp_path / "corpus.txt").write_text(" ".join(f"word{i % 23} t{i % 7}" for i in range(200)))
        app.kld = KldOptions(texts=(Path("corpus.txt"),), ctx=32, chunks=2, no_cache=True)
    elif mode == "generate":
        shutil.copy(DATA / "gen-tui-prompts.jsonl", tmp_path / "prompts.jsonl")
        app.gen = GenOptions(task="prompts", data="prompts.jsonl", no_cache=True, max_new_tokens=4)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await start_run(pilot) if mode == "choice" else await _settled_screen(pilot)
        table = screen.query_one(ModelTable)
        assert "KL p75" in [column for column, _ in table.columns_shown]
        report = screen.live.current_report() if screen.live is not None else None
        assert report is not None and report.complete
        value = report.to_dict()["quants"][-1][NAME]
        cell = table.get_cell(report.quants[-1].label, "KL p75")
        assert str(cell) == p75.cell(value) != formats.DASH


async def _settled_screen(pilot: Pilot[None]) -> RunScreen:
    await settle(pilot)
    assert isinstance(pilot.app.screen, RunScreen)
    return pilot.app.screen
