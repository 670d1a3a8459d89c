"""Loading a model between its lifecycle events (`ggflip.runs.loading`): a run stopped at
`ModelLoaded` leaves no model open, in every mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackend, FakeBackendFactory, FakeModel
from ggflip.choice.engine import run_comparison
from ggflip.cli.generate import gen_options
from ggflip.cli.main import parse_command_line
from ggflip.cli.run import build_run_spec
from ggflip.config.models_toml import ModelSpec
from ggflip.corpus.engine import run_kld
from ggflip.corpus.setup import kld_options, resolve_kld_spec
from ggflip.generate.engine import run_generation
from ggflip.generate.setup import resolve_gen_spec
from ggflip.runs.events import ModelLoaded, ModelLoading
from ggflip.runs.loading import open_model

PATHS = ("/m/f16.gguf", "/m/q1.gguf")
DATA = Path(__file__).parent / "data"


class CountingBackend(FakeBackend):
    """A fake backend that counts its closes."""

    def __init__(self, model: FakeModel, closed: list[str], label: str) -> None:
        super().__init__(model)
        self._closed, self._label = closed, label

    def close(self) -> None:
        self._closed.append(self._label)


class CountingFactory(FakeBackendFactory):
    """Fake models whose backends report their closes to `closed`."""

    def __init__(self) -> None:
        super().__init__({PATHS[0]: FakeModel(), PATHS[1]: FakeModel(noise=0.1)})
        self.closed: list[str] = []

    def open(self, spec: ModelSpec) -> FakeBackend:
        self.opened.append(spec.label)
        return CountingBackend(self._model(spec), self.closed, spec.label)


def test_open_model_yields_its_events_and_returns_the_open_backend() -> None:
    factory = CountingFactory()
    loading = open_model(factory, ModelSpec("F16", Path(PATHS[0])), "baseline")
    first, second = next(loading), next(loading)
    assert isinstance(first, ModelLoading) and isinstance(second, ModelLoaded)
    assert (first.label, first.role, first.path) == ("F16", "baseline", PATHS[0])
    with pytest.raises(StopIteration) as done:
        next(loading)
    assert isinstance(done.value.value, CountingBackend)
    assert factory.opened == ["F16"] and factory.closed == []


def test_open_model_stopped_at_model_loaded_closes_the_model() -> None:
    factory = CountingFactory()
    loading = open_model(factory, ModelSpec("F16", Path(PATHS[0])), "baseline")
    next(loading), next(loading)
    loading.close()
    assert factory.closed == ["F16"]


def _models(folder: Path) -> Path:
    models = folder / "models.toml"
    models.write_text(
        f'[sets.fake]\nbaseline = {{ path = "{PATHS[0]}", label = "F16" }}\n'
        f'quants = [ {{ path = "{PATHS[1]}", label = "Q1" }} ]\n'
    )
    return models


def _questions(folder: Path) -> Path:
    rows = [
        {"id": f"q{i}", "question": f"w{i} w3", "choices": ["w1", "w2"], "answer": i % 2}
        for i in range(6)
    ]
    path = folder / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("mode", ["run", "kld", "generate"])
@pytest.mark.parametrize("stop_at", [1, 2])
def test_a_run_stopped_at_each_model_loaded_leaves_no_model_open(
    tmp_path: Path, mode: str, stop_at: int
) -> None:
    """Closing the engine right after the n-th `ModelLoaded` (a cancel button) closes every
    model opened so far."""
    flags = ["--models", str(_models(tmp_path)), "--no-cache"]
    factory = CountingFactory()
    if mode == "run":
        args = parse_command_line(["run", *flags, "--data", str(_questions(tmp_path))])
        events = run_comparison(build_run_spec(args), factory)
    elif mode == "kld":
        text = tmp_path / "corpus.txt"
        text.write_text(" ".join(f"w{(i * 7) % 50}" for i in range(100)))
        args = parse_command_line(["kld", *flags, "--text", str(text), "--ctx", "32"])
        events = run_kld(resolve_kld_spec(kld_options(args)), factory)
    else:
        data = DATA / "gen-tui-prompts.jsonl"
        argv = ["run", *flags, "--task", "prompts", "--data", str(data), "--max-new-tokens", "3"]
        events = run_generation(resolve_gen_spec(gen_options(parse_command_line(argv))), factory)
    loaded = 0
    for event in events:
        loaded += isinstance(event, ModelLoaded)
        if loaded == stop_at:
            break
    events.close()
    assert len(factory.opened) == stop_at
    assert sorted(factory.closed) == sorted(factory.opened)
