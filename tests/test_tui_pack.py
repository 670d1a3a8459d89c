"""`ggflip tui --baseline-pack PACK --quant FILE`: the setup shows the pack's baseline, Enter runs
the quants against the pack (the baseline GGUF is gone) and the run's report is `ggflip run
--baseline-pack`'s; a bad pack is one line before the app opens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from ggflip.cli.main import main
from ggflip.errors import ExitCode
from ggflip.tui.app import GgflipApp
from ggflip.tui.choice_view import ChoiceScreen
from ggflip.tui.setup_models import file_size
from tests.test_baseline_packs import (  # noqa: F401 - fixtures
    choice_pack,
    models,
    without_timing,
)
from tests.tui_helpers import run_async, settle, start_run


@pytest.fixture
def exported(
    models: dict[str, Path],  # noqa: F811
    choice_pack: tuple[Path, dict[str, Any]],  # noqa: F811
) -> tuple[Path, dict[str, Path]]:
    """A multiple-choice pack of the tiny baseline, and the model files (baseline included)."""
    return choice_pack[0], models


def _opened_app(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> GgflipApp:
    """The app `ggflip tui ARGV` would open (built by the command, not run)."""
    opened: list[GgflipApp] = []
    monkeypatch.setattr(GgflipApp, "run", lambda self: opened.append(self))
    assert main(["tui", *argv]) == ExitCode.OK
    (app,) = opened
    return app


@run_async
async def test_the_tui_runs_the_pack_like_run(
    tmp_path: Path,
    exported: tuple[Path, dict[str, Path]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pack, files = exported
    base_size = files["base"].stat().st_size
    files["base"].unlink()  # only the pack stands for the baseline
    flags = ["--baseline-pack", str(pack), "--quant", str(files["noisy"])]
    flags += ["--quant", str(files["q8"]), "--cache-dir", str(tmp_path / "home-cache")]
    assert main(["run", *flags, "--json"]) == ExitCode.OK
    cli = json.loads(capsys.readouterr().out)
    app = _opened_app(monkeypatch, flags)
    app.export_dir = tmp_path
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        shown = str(app.screen.query_one("#llama", Static).render())
        n = cli["n_questions"]
        assert f"pack {pack.name}: F32 (tiny-F32.gguf), task mmlu, {n} questions" in shown
        assert not any(field.display for field in app.screen.query(".field"))  # no form
        # The baseline's row: its size as the file had it (read from the pack), not "missing".
        base_row = [str(cell) for cell in app.screen.query_one("#models", DataTable).get_row_at(0)]
        assert base_row[0] == "baseline" and base_row[2] == file_size(base_size), base_row
        screen = await start_run(pilot)
        assert isinstance(screen, ChoiceScreen) and screen.live is not None
        assert screen.live.state == "finished"
        tui = screen.live.current_report().to_dict()
    assert without_timing(tui) == without_timing(cli)
    assert tui["quants"][0]["kl_mean"] > 0 and tui["floor"] is None  # compared, no floor


def test_a_bad_pack_is_one_line_before_the_app(
    tmp_path: Path,
    exported: tuple[Path, dict[str, Path]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(GgflipApp, "run", lambda self: pytest.fail("the app opened"))
    pack, files = exported
    cut = tmp_path / "cut.pack"
    cut.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    for bad, quant, words in (
        (cut, files["noisy"], "get it again"),
        (pack, files["other"], "tokenizer"),
    ):
        code = main(["tui", "--baseline-pack", str(bad), "--quant", str(quant)])
        err = capsys.readouterr().err
        assert code != ExitCode.OK and err.count("\n") == 1, err
        assert err.startswith("ggflip: error: ") and words in err, err
