"""models.toml parsing: the valid layout, and one broken fixture per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.config.from_files import model_set_from_files
from ggflip.config.models_toml import (
    LlamaSettings,
    expand_path,
    load_models_toml,
    parse_models_toml,
)
from ggflip.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"


def test_valid_file_layers_llama_settings() -> None:
    config = load_models_toml(DATA / "valid.toml")
    tiny = config.get_set("tiny")
    assert tiny.baseline.label == "F16"
    assert tiny.baseline.path == DATA / "models" / "base.gguf"
    assert [q.label for q in tiny.quants] == ["Q8_0", "Q4_K_M"]
    assert tiny.baseline.llama == LlamaSettings(n_ctx=1024, n_threads=2, n_batch=256)
    assert tiny.quants[1].llama.n_gpu_layers == 99
    assert tiny.quants[1].llama.n_batch == 256
    assert tiny.quants[1].path == Path("/abs/q4.gguf")


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("syntax_error.toml", r"syntax_error.toml: TOML syntax error"),
        ("unknown_key.toml", r"\[sets.x\] quant: unknown key; did you mean 'quants'\?"),
        ("wrong_type.toml", r"\[llama\] n_ctx: expected an integer, got str 'big'"),
        ("missing_baseline.toml", r"\[sets.x\] baseline: missing required key"),
        ("duplicate_label.toml", r"\[sets.x\] quants: labels must be unique, repeated: A"),
        (
            "unknown_llama_key.toml",
            r"\[sets.x.quants.0.llama\] n_gpu_layer: unknown key; did you mean 'n_gpu_layers'\?",
        ),
        ("nonpositive.toml", r"\[llama\] n_ctx: must be positive, got 0"),
        ("bool_wrong_type.toml", r"\[llama\] flash_attn: expected true or false, got int 1"),
        ("missing_path.toml", r"\[sets.x.baseline\] path: missing required key"),
        ("backend_wrong_type.toml", r"\[top level\] backend: expected a string, got int 3"),
        ("backend_empty.toml", r"\[top level\] backend: must name a backend"),
        ("backend_in_llama.toml", r"\[llama\] backend: unknown key"),
        ("backend_on_model.toml", r"\[sets.x.baseline\] backend: unknown key"),
    ],
)
def test_broken_files_name_file_table_and_key(fixture: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_models_toml(DATA / fixture)
    assert str(DATA / fixture) in str(info.value)
    assert "\n" not in str(info.value).strip() or fixture == "syntax_error.toml"


def test_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="models file not found \\(pass --models PATH\\)"):
        load_models_toml(tmp_path / "nope.toml")


def test_unknown_set_suggests_a_name() -> None:
    config = load_models_toml(DATA / "valid.toml")
    with pytest.raises(ConfigError, match="no set named 'tiyn'; did you mean 'tiny'\\?"):
        config.get_set("tiyn")


def test_paths_expand_cache_home_and_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GGFLIP_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("MODELS", "/srv/models")
    assert expand_path("{cache}/m.gguf", Path("/x")) == tmp_path / "c" / "m.gguf"
    assert expand_path("$MODELS/m.gguf", Path("/x")) == Path("/srv/models/m.gguf")
    assert expand_path("rel/m.gguf", Path("/x")) == Path("/x/rel/m.gguf")
    assert expand_path("~/m.gguf", Path("/x")) == Path.home() / "m.gguf"


def test_repo_models_toml_names_the_embedded_default() -> None:
    config = load_models_toml(Path(__file__).parents[1] / "models.toml")
    demo = config.get_set("gemma-270m")
    assert demo.baseline.label == "F16"
    assert [q.label.split()[0] for q in demo.quants] == [
        "Q8_0",
        "Q5_K_M",
        "Q4_K_M",
        "Q3_K_M",
        "Q2_K",
    ]


def test_label_defaults_to_file_stem() -> None:
    config = parse_models_toml(
        '[sets.s]\nbaseline = { path = "dir/model-f16.gguf" }\n', Path("/m/models.toml")
    )
    assert config.get_set("s").baseline.label == "model-f16"


def test_plain_path_strings_stand_for_models_labelled_like_the_command_line() -> None:
    """`baseline = "F16.gguf"` and `quants = ["Q8_0.gguf"]` work; unlabelled models get the
    `--baseline/--quant` labels (file stem less the shared prefix), a table keeps its label."""
    config = parse_models_toml(
        "[sets.s]\n"
        'baseline = "gemma-3-270m-F16.gguf"\n'
        'quants = ["gemma-3-270m-Q8_0.gguf", { path = "/abs/gemma-3-270m-Q4_0.gguf" },'
        ' { path = "q2.gguf", label = "tiny", llama = { n_ctx = 64 } }]\n',
        Path("/m/models.toml"),
    )
    model_set = config.get_set("s")
    assert model_set.baseline.path == Path("/m/gemma-3-270m-F16.gguf")
    assert [m.label for m in model_set.models] == ["F16", "Q8_0", "Q4_0", "tiny"]
    assert model_set.quants[2].llama.n_ctx == 64
    from_cli = model_set_from_files(
        "gemma-3-270m-F16.gguf", ["gemma-3-270m-Q8_0.gguf", "/abs/gemma-3-270m-Q4_0.gguf"]
    )
    assert [m.label for m in from_cli.models] == ["F16", "Q8_0", "Q4_0"]


def test_a_model_that_is_neither_path_nor_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[sets.s.quants.0\]: expected a GGUF path or a table"):
        parse_models_toml('[sets.s]\nbaseline = "a.gguf"\nquants = [3]\n', Path("/m/models.toml"))
