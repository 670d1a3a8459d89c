"""The one fold of engine events (`runs.fold` and each mode's part) on the fake backend: what the
CLI and the TUI both read."""

from __future__ import annotations

import ast
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import partial_report, run_comparison
from ggflip.choice.events import QuantFinished, RunFinished
from ggflip.choice.fold import ChoiceFold
from ggflip.choice.setup import resolve_run_spec
from ggflip.corpus.engine import partial_kld_report, run_kld
from ggflip.corpus.events import KldFinished, QuantKldFinished
from ggflip.corpus.fold import CorpusFold
from ggflip.corpus.setup import KldOptions, resolve_kld_spec
from ggflip.generate.engine import report as gen_report
from ggflip.generate.engine import run_generation
from ggflip.generate.events import GenFinished, GenQuantFinished
from ggflip.generate.fold import GenFold
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.runs.fold import CACHED, DONE, Fold
from tests.tui_helpers import FAKE_MODELS, write_fake_set

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent / "ggflip"


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_fake_set(tmp_path)
    shutil.copy(DATA / "gen-tui-prompts.jsonl", tmp_path / "prompts.jsonl")
    words = " ".join(f"word{(i * 7) % 41} thing{i % 13} item{(i * 3) % 29}" for i in range(120))
    (tmp_path / "corpus.txt").write_text(words)
    return tmp_path


def _documents(report: Any) -> dict[str, Any]:
    """A report's JSON without the timings, which differ between two runs."""
    document: dict[str, Any] = json.loads(report.to_json())
    for model in [document.get("baseline") or {}, *document["quants"]]:
        model.pop("seconds", None)
    return document


def _fold_all(fold: Fold[Any, Any, Any, Any], events: Iterator[object]) -> list[object]:
    seen = []
    for event in events:
        fold.fold(event)
        seen.append(event)
    return seen


def _modes(folder: Path) -> dict[str, tuple[Any, Callable[[Any], Fold[Any, Any, Any, Any]], Any]]:
    """Each mode's spec, fold and engine on the fake set."""
    factory = FakeBackendFactory(FAKE_MODELS)
    choice = resolve_run_spec(write_fake_set(folder))
    gen = resolve_gen_spec(
        GenOptions(task="prompts", data="prompts.jsonl", no_cache=True, max_new_tokens=6)
    )
    corpus = resolve_kld_spec(
        KldOptions(texts=(Path("corpus.txt"),), ctx=32, chunks=3, no_cache=True)
    )
    clock = lambda: 0.0  # noqa: E731
    return {
        "choice": (choice, lambda s: ChoiceFold(s, clock), run_comparison(choice, factory)),
        "generate": (gen, lambda s: GenFold(s, clock), run_generation(gen, factory)),
        "corpus": (corpus, lambda s: CorpusFold(s, clock), run_kld(corpus, factory)),
    }


@pytest.mark.parametrize("mode", ["choice", "generate", "corpus"])
def test_a_whole_run_folds_into_its_final_report(fake_dir: Path, mode: str) -> None:
    """Every model ends done with all its units; `current_report()` is the run's own report."""
    spec, make, events = _modes(fake_dir)[mode]
    fold = make(spec)
    seen = _fold_all(fold, events)
    final = next(e for e in seen if isinstance(e, (RunFinished, GenFinished, KldFinished)))
    assert fold.current_report() is final.report and fold.state == "finished"
    for model in fold.models.values():
        assert model.status in (DONE, CACHED) and model.done == model.total > 0
    assert [q.label for q in fold.quants] == ["Q8_0", "Q2_K"] and fold.n_finished_quants == 2


def test_a_run_cut_after_one_quant_reports_what_finished(fake_dir: Path) -> None:
    """Stopped after Q8_0: each mode's partial report holds the baseline and Q8_0, as the engine's
    own partial-report function builds it from the same summaries."""
    for mode, (spec, make, events) in _modes(fake_dir).items():
        fold = make(spec)
        for event in events:
            fold.fold(event)
            if isinstance(event, (QuantFinished, GenQuantFinished, QuantKldFinished)):
                break
        events.close()
        report = fold.current_report()
        assert report.complete is False and [q.label for q in report.quants] == ["Q8_0"], mode
        if mode == "choice":
            expected = partial_report(spec, fold.baseline, fold.quants, fold.skipped)
        elif mode == "generate":
            expected = gen_report(spec, fold.baseline, fold.quants)
        else:
            expected = partial_kld_report(
                spec, fold.baseline, fold.quants, 3, 3, fold.texts
            )  # the baseline scored all 3 chunks
        assert _documents(report) == _documents(expected), mode


def test_running_metrics_equal_the_engines_summary(fake_dir: Path) -> None:
    """The metrics a fold recomputes over a quant's rows while it runs are the engine's summary
    once the rows are all in (multiple choice and generation); corpus statistics likewise."""
    modes = _modes(fake_dir)
    for mode in ("choice", "generate", "corpus"):
        spec, make, events = modes[mode]
        fold = make(spec)
        for event in events:
            if isinstance(event, (QuantFinished, GenQuantFinished, QuantKldFinished)):
                label, summary = event.summary.label, event.summary
                if mode == "choice":
                    assert fold.values(label)["kl_mean"] == pytest.approx(summary.kl_mean)
                    assert fold.values(label)["n_flips_lost"] == summary.n_flips_lost
                elif mode == "generate":
                    running = fold.values(label)
                    assert running.kl_mean == pytest.approx(summary.kl_mean)
                    assert running.same_text == summary.same_text
                else:
                    running = fold.stats(label)
                    assert running.kl_mean == pytest.approx(summary.stats.kl_mean)
                    assert running.same_top == summary.stats.same_top
            fold.fold(event)


def test_a_cached_baseline_counts_as_done_and_is_noted(fake_dir: Path) -> None:
    """A second run with the cache: the baseline is "cached" with every unit, and a note says
    where from (the CLI prints it, the TUI logs it)."""
    options = GenOptions(
        task="prompts", data="prompts.jsonl", max_new_tokens=6, cache_dir=fake_dir / "cache"
    )
    factory = FakeBackendFactory(FAKE_MODELS)
    for _ in range(2):
        spec = resolve_gen_spec(options)
        fold = GenFold(spec, lambda: 0.0)
        _fold_all(fold, run_generation(spec, factory))
    base = fold.models["F16"]
    assert base.status == CACHED and base.done == base.total == len(spec.units())
    assert any("F16: baseline scores from cache" in note.text for note in fold.notes)


EVENT_FOLDING = {
    "QuestionScored",
    "TurnGenerated",
    "ChunkScored",
    "Resumed",
    "TurnsRestored",
    "ModelLoading",
    "ModelLoaded",
    "BaselineFromCache",
}


def test_no_front_end_folds_events() -> None:
    """Neither `cli/` nor `tui/` imports an event that a fold takes: progress, lifecycle and
    finished events are the folds' alone."""
    offenders = []
    for path in [*(ROOT / "cli").glob("*.py"), *(ROOT / "tui").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(".events"):
                names = {alias.name for alias in node.names}
                bad = {n for n in names if n in EVENT_FOLDING or n.endswith("Finished")}
                offenders += [f"{path.name}: {name}" for name in sorted(bad)]
    assert offenders == []


def test_ctrl_c_in_the_cli_prints_the_folds_partial_report(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ggflip run --task prompts` stopped after Q8_0: exit 130, one JSON document holding the
    baseline and Q8_0, and one line saying what was kept."""
    import ggflip.cli.generate as cli_generate
    from ggflip.cli.main import main

    def interrupted(spec: Any, factory: Any) -> Iterator[object]:
        for event in run_generation(spec, FakeBackendFactory(FAKE_MODELS)):
            yield event
            if isinstance(event, GenQuantFinished):
                raise KeyboardInterrupt

    monkeypatch.setattr(cli_generate, "run_generation", interrupted)
    code = main(["run", "--task", "prompts", "--data", "prompts.jsonl", "--max-new-tokens", "6",
                 "--json", "--no-cache"])  # fmt: skip
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 130 and report["complete"] is False
    assert report["baseline"]["label"] == "F16" and [q["label"] for q in report["quants"]] == [
        "Q8_0"
    ]
    assert "interrupted; the report holds the 1 quant(s) that finished; run the same" in (
        captured.err.replace("\n", " ")
    )
