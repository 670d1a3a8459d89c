"""resolve_run_spec (shared by the CLI and the TUI), the Markdown report, and the GGUF parameter
count."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.cli.main import main
from ggflip.errors import ExitCode, ModelFileError, UsageError
from ggflip.gguf.header import parameter_count
from ggflip.reports.choice import render_markdown
from ggflip.scoring import formats
from tests.tui_helpers import FAKE_MODELS, write_fake_set


def test_resolve_run_spec_picks_the_only_set_and_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = write_fake_set(tmp_path)
    spec = resolve_run_spec(
        RunOptions(**{**options.__dict__, "limit": 5, "seed": 3, "subjects": ("History",)})
    )
    assert spec.model_set.name == "fake"
    assert len(spec.questions.questions) == 5
    assert {q.subject for q in spec.questions.questions} == {"history"}
    assert spec.cache_dir is None  # no_cache
    again = resolve_run_spec(
        RunOptions(**{**options.__dict__, "limit": 5, "seed": 3, "subjects": ("History",)})
    )
    assert [q.id for q in again.questions.questions] == [q.id for q in spec.questions.questions]


def test_first_and_seed_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--first .* --seed"):
        resolve_run_spec(
            RunOptions(models_path=tmp_path / "absent.toml", limit=3, first=True, seed=1)
        )


def test_the_run_says_which_sample_it_took(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's `selection` and stderr name the sample; --first keeps file order's head."""
    monkeypatch.chdir(tmp_path)
    options = write_fake_set(tmp_path)
    spec = resolve_run_spec(RunOptions(**{**options.__dict__, "limit": 4}))
    assert {q.subject for q in spec.questions.questions} == {"algebra", "history"}
    events = list(run_comparison(spec, FakeBackendFactory(FAKE_MODELS)))
    assert isinstance(events[-1], RunFinished)
    assert events[-1].report.selection.startswith("4 of 40 questions, stratified by subject")
    first = resolve_run_spec(RunOptions(**{**options.__dict__, "limit": 4, "first": True}))
    assert [q.id for q in first.questions.questions] == ["q0", "q1", "q2", "q3"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("limit", 0, "--limit"), ("batch_size", 0, "--batch-size"), ("top_k", -1, "--top-k")],
)
def test_resolve_run_spec_refuses_non_positive_sizes(
    tmp_path: Path, field: str, value: int, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_run_spec(RunOptions(models_path=tmp_path / "absent.toml", **{field: value}))


def test_markdown_summary_of_a_fake_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    events = list(
        run_comparison(resolve_run_spec(write_fake_set(tmp_path)), FakeBackendFactory(FAKE_MODELS))
    )
    assert isinstance(events[-1], RunFinished)
    report = events[-1].report
    text = render_markdown(report, flip_rows=3)
    q2 = report.quants[1]
    assert f"| Q2_K | {100 * q2.accuracy:.1f}% |" in text
    assert text.count("## ") == 2
    worst = max((r for r in q2.rows if r.flip), key=lambda r: r.kl)
    section = text.split("## Q2_K")[1]
    assert f"| {worst.id} |" in section and f"| {formats.sig(worst.kl)} |" in section


def test_parameter_count_matches_the_gguf_package(tiny_gguf_dir: Path) -> None:
    from gguf import GGUFReader

    for name in ("base.gguf", "q4_0.gguf"):
        reader = GGUFReader(tiny_gguf_dir / name)
        assert parameter_count(tiny_gguf_dir / name) == sum(
            int(t.n_elements) for t in reader.tensors
        )


def test_parameter_count_refuses_a_non_gguf(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        parameter_count(tmp_path / "x.gguf")


def test_no_subcommand_without_a_terminal_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.USAGE
    assert "tui" in capsys.readouterr().err


def test_cli_and_tui_build_the_same_task_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task flags (--mode, --shots, --shots-from, --field, --no-prefix-reuse) reach RunOptions
    from both front ends."""
    from ggflip.cli.main import build_parser
    from ggflip.cli.run import run_options
    from ggflip.tui.command import tui_options

    monkeypatch.chdir(tmp_path)
    write_fake_set(tmp_path)
    tasks = Path(__file__).parent / "data" / "tasks"
    flags = [
        "--task",
        "arc_easy",
        "--data",
        str(tasks / "arc_easy/test.jsonl"),
        "--mode",
        "letter",
        "--shots",
        "1",
        "--shots-from",
        str(tasks / "arc_easy/train.jsonl"),
        "--field",
        "question=question",
    ]
    cli = run_options(build_parser().parse_args(["run", *flags, "--no-prefix-reuse"]))
    tui = tui_options(build_parser().parse_args(["tui", *flags]))
    assert (cli.mode, cli.shots, cli.fields, cli.prefix_reuse) == (
        "letter",
        1,
        ("question=question",),
        False,
    )
    assert (tui.task, tui.mode, tui.shots, tui.shots_from, tui.fields) == (
        cli.task,
        cli.mode,
        cli.shots,
        cli.shots_from,
        cli.fields,
    )
    one, two = resolve_run_spec(cli), resolve_run_spec(tui)
    assert one.prompt_set == two.prompt_set
    assert (
        one.prompt_set.mode,
        one.prompt_set.n_shots,
        one.share_prefixes,
        two.share_prefixes,
    ) == ("letter", 1, False, True)
    assert (
        "{options}" not in one.prompt_set.items[0].contexts[0]
        and "A." in one.prompt_set.items[0].contexts[0]
    )
    with pytest.raises(UsageError, match="--shots"):
        resolve_run_spec(RunOptions(**{**cli.__dict__, "shots": -1}))


def test_markdown_names_a_cached_baseline_plainly_and_has_the_legend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = RunOptions(
        **{**write_fake_set(tmp_path).__dict__, "no_cache": False, "cache_dir": tmp_path / "c"}
    )
    for _ in range(2):  # the second run reads the baseline from the cache
        events = list(run_comparison(resolve_run_spec(options), FakeBackendFactory(FAKE_MODELS)))
    report = events[-1].report  # type: ignore[attr-defined]
    assert report.baseline.from_cache
    text = render_markdown(report)
    assert "| F16 (baseline) |" in text and "(cached)" not in text
    assert "McNemar p: exact test of c→i against i→c" in text
