"""GSM8K with local --data and the Hub out of reach: one line naming --shots-from / --shots 0, at
once and before any model loads; --shots-from FILE and --shots 0 then run offline."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.errors import DataError, ExitCode
from ggflip.generate.setup import GenOptions, resolve_gen_spec
from ggflip.tasks.generation import GEN_TASKS, SHOT_SEED, load_items

DATA = Path(__file__).parent / "data"
TEST_ROWS = str(DATA / "gsm8k-test-rows.jsonl")
TRAIN_ROWS = str(DATA / "gsm8k-train-rows.jsonl")


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A models file whose files do not exist: nothing may get as far as loading one."""
    path = tmp_path / "models.toml"
    path.write_text(
        '[sets.fake]\nbaseline = { path = "/m/f16.gguf", label = "F16" }\n'
        'quants = [ { path = "/m/q8.gguf", label = "Q8_0" } ]\n'
    )
    return path


def _options(models: Path, **kwargs: object) -> GenOptions:
    return GenOptions(task="gsm8k", models_path=models, data=TEST_ROWS, no_cache=True, **kwargs)  # type: ignore[arg-type]


def test_offline_mode_names_both_fixes_at_once(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(DataError) as caught:
        resolve_gen_spec(_options(models))
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "gsm8k takes its 5 shots from hf:openai/gsm8k:main:train, and the Hugging Face Hub is "
        "out of reach (HF_HUB_OFFLINE is set): pass --shots-from FILE (rows like --data's) or "
        "--shots 0"
    )


def test_an_unanswering_hub_is_probed_once_not_retried(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example:8443")
    calls: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], timeout: float) -> socket.socket:
        calls.append(address)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(DataError, match=r"out of reach \(hub.example does not answer\): pass"):
        resolve_gen_spec(_options(models))
    assert calls == [("hub.example", 8443)]


def test_shots_from_a_file_and_no_shots_run_offline(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = resolve_gen_spec(_options(models, shots_from=TRAIN_ROWS))
    pool = load_items(GEN_TASKS["gsm8k"], TRAIN_ROWS)
    expected = [pool[i].id for i in random.Random(SHOT_SEED).sample(range(len(pool)), 5)]
    assert [s.id for s in spec.shots] == expected and len(spec.items) == 3
    assert resolve_gen_spec(_options(models, shots=0)).shots == ()


def test_the_cli_says_it_in_one_line(
    models: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["run", "--task", "gsm8k", "--data", TEST_ROWS, "--models", str(models), "--no-cache"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == ExitCode.DATA and out == ""
    *before, last = err.splitlines()
    assert before == [
        "ggflip: gsm8k is a generation task: comparing greedy generations turn by turn "
        "(generation mode)"
    ]
    assert last.startswith("ggflip: error: gsm8k takes its 5 shots")
    assert last.endswith("pass --shots-from FILE (rows like --data's) or --shots 0")
