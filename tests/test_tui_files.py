"""`ggflip tui --baseline FILE --quant FILE`: the files make the setup view's one set, as `run`
builds it, and a run started from there compares those files; a bad file is one line before the
app opens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory, FakeModel
from ggflip.choice.setup import RunOptions
from ggflip.cli.main import main, parse_command_line
from ggflip.config.from_files import CLI_SET_NAME
from ggflip.errors import ExitCode
from ggflip.tui.command import tui_options
from tests.tui_helpers import fake_app, run_async, start_run, write_fake_set


def test_tui_parses_baseline_and_quant_like_run() -> None:
    argv = ["--baseline", "a-F16.gguf", "--quant", "a-Q8_0.gguf", "--quant", "a-Q2_K.gguf"]
    options = tui_options(parse_command_line(["tui", *argv]))
    assert (options.baseline, options.quants) == ("a-F16.gguf", ("a-Q8_0.gguf", "a-Q2_K.gguf"))
    run = parse_command_line(["run", *argv])
    assert (run.baseline, run.quant) == (options.baseline, list(options.quants))


def test_a_missing_file_is_one_line_before_the_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ggflip.tui.app import GgflipApp

    monkeypatch.setattr(GgflipApp, "run", lambda self: pytest.fail("the app opened"))
    missing = tmp_path / "nowhere.gguf"
    code = main(["tui", "--baseline", str(missing), "--quant", str(missing)])
    err = capsys.readouterr().err
    assert code == ExitCode.MODEL and err.count("\n") == 1 and err.startswith("ggflip: error: ")
    assert str(missing) in err


@run_async
async def test_the_files_are_the_setup_set_and_the_run(
    tiny_gguf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup lists the files' set; Enter runs those files."""
    monkeypatch.chdir(tmp_path)
    base, q8 = tiny_gguf_dir / "base_f16.gguf", tiny_gguf_dir / "q8_0.gguf"
    options: RunOptions = dataclasses.replace(
        write_fake_set(tmp_path), baseline=str(base), quants=(str(q8),), floor=False
    )
    factory = FakeBackendFactory({base: FakeModel(), q8: FakeModel(noise=0.3)})
    app = fake_app(options, tmp_path, factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot)
        assert screen.live is not None and screen.live.state == "finished"
        assert screen.live.spec.model_set.name == CLI_SET_NAME
        assert [m.path for m in screen.live.spec.model_set.models] == [base, q8]
        assert sorted(factory.opened) == ["base_f16", "q8_0"]  # labels from the names, as run
