"""The backend seam: models.toml's `backend` picks the factory every front end runs with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory, FakeModel
from ggflip.backends.llama import LlamaBackendFactory
from ggflip.backends.registry import BACKENDS, backend_factory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.cli.main import main, parse_command_line
from ggflip.config.models_toml import ModelSet, ModelSpec, load_models_toml
from ggflip.corpus.setup import KldOptions, kld_options
from ggflip.errors import ConfigError, ExitCode
from ggflip.tasks.generation import is_generation_task
from tests.test_overlap import _without_timings

DATA = Path(__file__).parent / "data" / "config"
PATHS = ("/m/f16.gguf", "/m/q1.gguf", "/m/q2.gguf")


def _fake_files(folder: Path, backend_line: str = 'backend = "fake"') -> tuple[Path, Path]:
    """A models.toml whose set runs on `backend_line`'s backend, and 24 questions."""
    models = folder / "models.toml"
    models.write_text(
        f'{backend_line}\n[sets.fake]\nbaseline = {{ path = "{PATHS[0]}", label = "F16" }}\n'
        f'quants = [ {{ path = "{PATHS[1]}", label = "Q1" }}, '
        f'{{ path = "{PATHS[2]}", label = "Q2" }} ]\n'
    )
    questions = folder / "questions.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "question": f"question {i} about w{i}",
            "choices": ["w1", "w2", "w3"],
            "answer": i % 3,
            "subject": ("algebra", "history")[i % 2],
        }
        for i in range(24)
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return models, questions


class TestRegistry:
    """Names to factories."""

    def test_a_set_runs_on_llama_unless_the_file_names_another_backend(self) -> None:
        model_set = load_models_toml(DATA / "valid.toml").get_set("tiny")
        assert model_set.backend == "llama"
        assert isinstance(backend_factory(model_set), LlamaBackendFactory)

    def test_a_set_overrides_the_top_level_backend(self) -> None:
        config = load_models_toml(DATA / "backends.toml")
        assert isinstance(backend_factory(config.get_set("top")), FakeBackendFactory)
        assert config.get_set("own").backend == "lama"

    def test_an_unknown_backend_is_one_line_naming_file_table_and_the_closest_name(self) -> None:
        config = load_models_toml(DATA / "backends.toml")
        with pytest.raises(ConfigError) as info:
            backend_factory(config.get_set("own"))
        assert str(info.value) == (
            f"{(DATA / 'backends.toml').resolve()}: [sets.own] backend: unknown backend 'lama'; "
            "did you mean 'llama'? (backends: fake, llama)"
        )

    def test_a_set_built_in_code_names_no_file(self) -> None:
        model_set = ModelSet("s", ModelSpec("b", Path("b.gguf")), (), backend="zzz")
        with pytest.raises(ConfigError, match=r"^unknown backend 'zzz' \(backends: fake, llama\)$"):
            backend_factory(model_set)

    def test_every_registered_factory_keys_a_baseline_by_its_settings(self) -> None:
        model = ModelSpec("b", Path("b.gguf"))
        sized = model.with_context(64, 1)
        assert (sized.llama.n_ctx, sized.llama.n_seq_max) == (64, 1)
        for name in BACKENDS:
            factory = backend_factory(ModelSet("s", model, (), backend=name))
            numerics = factory.baseline_numerics(sized)
            assert numerics["llama"]["n_ctx"] == 64 and numerics["llama"]["n_seq_max"] == 1
            assert factory.numeric_settings(sized) == numerics["llama"]
            assert factory.scoring_workers(3, sized) == 3
            assert factory.scoring_workers(0, sized) == 0


class TestFakeBackendThroughTheSeam:
    """`backend = "fake"` in models.toml runs the CLI end to end on the fake backend."""

    def test_run_json_is_the_fake_models_report(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, questions = _fake_files(tmp_path)
        code = main(
            ["run", "--models", str(models), "--data", str(questions), "--no-cache", "--json"]
        )
        out = capsys.readouterr().out
        assert code == ExitCode.OK
        report = json.loads(out)
        assert report["baseline"]["computed_with"]["build"] == {"backend": "fake"}
        # the documented schedule of `FakeBackendFactory.for_set`, built independently
        expected_factory = FakeBackendFactory(
            {
                PATHS[0]: FakeModel(),
                PATHS[1]: FakeModel(noise=0.1, noise_seed=1),
                PATHS[2]: FakeModel(noise=0.2, noise_seed=2),
            }
        )
        spec = resolve_run_spec(RunOptions(models_path=models, data=str(questions), no_cache=True))
        finished = list(run_comparison(spec, expected_factory))[-1]
        assert isinstance(finished, RunFinished)
        expected = json.loads(finished.report.to_json())
        assert _without_timings(report) == _without_timings(expected)
        kl = [quant["kl_mean"] for quant in report["quants"]]
        assert 0 < kl[0] < kl[1]  # noise 0.1 drifts less than noise 0.2

    def test_kld_json_runs_on_the_fake_backend(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, _ = _fake_files(tmp_path)
        text = tmp_path / "corpus.txt"
        text.write_text(" ".join(f"w{(i * 7) % 50}" for i in range(200)))
        code = main(
            [
                "kld",
                "--models",
                str(models),
                "--text",
                str(text),
                "--ctx",
                "32",
                "--no-cache",
                "--json",
            ]
        )
        report = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK
        assert [q["label"] for q in report["quants"]] == ["Q1", "Q2"]

    def test_an_unknown_backend_stops_the_cli_with_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, questions = _fake_files(tmp_path, 'backend = "fak"')
        code = main(
            ["run", "--models", str(models), "--data", str(questions), "--no-cache", "--json"]
        )
        captured = capsys.readouterr()
        assert code == ExitCode.CONFIG and captured.out == ""
        assert captured.err.strip().splitlines() == [
            f"ggflip: error: {models}: [top level] backend: unknown backend 'fak'; did you mean "
            "'fake'? (backends: fake, llama)"
        ]


class TestOneTranslation:
    """Flags become options once, whichever front end parsed them."""

    def test_kld_and_tui_text_flags_give_the_same_corpus_options(self) -> None:
        flags = [
            "--text",
            "a.txt",
            "--ctx",
            "64",
            "--chunks",
            "3",
            "--models",
            "m.toml",
            "--set",
            "s",
            "--no-cache",
            "--scoring-threads",
            "2",
        ]
        kld = kld_options(parse_command_line(["kld", *flags]))
        tui = kld_options(parse_command_line(["tui", *flags]))
        assert (
            kld
            == tui
            == KldOptions(
                texts=(Path("a.txt"),),
                models_path=Path("m.toml"),
                set_name="s",
                ctx=64,
                chunks=3,
                no_cache=True,
                scoring_threads=2,
            )
        )

    def test_kld_top_k_and_tail_samples_reach_the_options(self) -> None:
        flags = parse_command_line(["kld", "--text", "a", "--top-k", "7", "--tail-samples", "5"])
        options = kld_options(flags)
        assert (options.top_k, options.tail_samples) == (7, 5)

    def test_the_task_alone_picks_generation_mode(self) -> None:
        assert is_generation_task("gsm8k") and is_generation_task("prompts")
        assert not is_generation_task("mmlu")
        assert not is_generation_task("gsm8k", Path("my_task.toml"))

    def test_run_with_a_generation_task_says_so_on_stderr(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        models, _ = _fake_files(tmp_path)
        prompts = Path(__file__).parent / "data" / "gen-tui-prompts.jsonl"
        code = main(
            [
                "run",
                "--models",
                str(models),
                "--task",
                "prompts",
                "--data",
                str(prompts),
                "--limit",
                "3",
                "--max-new-tokens",
                "4",
                "--no-cache",
                "--json",
            ]
        )
        captured = capsys.readouterr()
        assert code == ExitCode.OK
        assert json.loads(captured.out)["task"] == "prompts"
        assert "ggflip: prompts is a generation task" in captured.err
