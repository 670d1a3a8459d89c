"""Patching models.toml: quants appended to a set's array as text, the rest of the file kept byte
for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.config.models_toml import load_models_toml
from ggflip.config.patch import add_quants
from ggflip.errors import ConfigError

SOURCE = """# top comment
[llama]
n_ctx = 512   # trailing comment

[sets.a]
description = "has # and ] inside a string"
baseline = { path = "base.gguf", label = "F16" }
quants = [ { path = "q8.gguf", label = "Q8_0" } ] # inline array, no trailing comma

[sets.b]
baseline = { path = "base.gguf" }
"""


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(SOURCE)
    return path


def test_append_to_an_inline_array_keeps_everything_else(models: Path, tmp_path: Path) -> None:
    add_quants(models, "a", tmp_path / "base.gguf", [("Q4_0", tmp_path / "q" / "m-Q4_0.gguf")])
    text = models.read_text()
    assert text.startswith(SOURCE.split("quants = [")[0])
    assert text.endswith('[sets.b]\nbaseline = { path = "base.gguf" }\n')
    a = load_models_toml(models).get_set("a")
    assert [(q.label, q.path) for q in a.quants] == [
        ("Q8_0", tmp_path / "q8.gguf"),
        ("Q4_0", tmp_path / "q" / "m-Q4_0.gguf"),
    ]
    assert a.description == "has # and ] inside a string"
    assert '{ path = "q/m-Q4_0.gguf", label = "Q4_0" }' in text


def test_set_without_quants_and_new_set(models: Path, tmp_path: Path) -> None:
    add_quants(models, "b", tmp_path / "base.gguf", [("Q2_K", Path("/abs/m-Q2_K.gguf"))])
    add_quants(models, "fresh", tmp_path / "base.gguf", [("Q6_K", Path('/odd "name".gguf'))])
    config = load_models_toml(models)
    assert [(q.label, q.path) for q in config.get_set("b").quants] == [
        ("Q2_K", Path("/abs/m-Q2_K.gguf"))
    ]
    fresh = config.get_set("fresh")
    assert fresh.baseline.path == tmp_path / "base.gguf"
    assert fresh.quants[0].path == Path('/odd "name".gguf')
    assert models.read_text().startswith(SOURCE.split("[sets.b]")[0] + "[sets.b]\nquants = [")


def test_array_of_tables_form(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        '[sets.t]\nbaseline = { path = "b.gguf" }\n[[sets.t.quants]]\npath = "q1.gguf"\n[llama]\n'
        "n_ctx = 64\n"
    )
    add_quants(models, "t", tmp_path / "b.gguf", [("Q4_0", tmp_path / "q2.gguf")])
    assert [q.label for q in load_models_toml(models).get_set("t").quants] == ["q1", "Q4_0"]


def test_same_label_other_file_or_other_baseline_is_refused(models: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already has a model labelled 'Q8_0'"):
        add_quants(models, "a", tmp_path / "base.gguf", [("Q8_0", tmp_path / "other.gguf")])
    with pytest.raises(ConfigError, match="compares against"):
        add_quants(models, "a", tmp_path / "other-base.gguf", [("Q4_0", tmp_path / "q.gguf")])
    assert models.read_text() == SOURCE


def test_missing_file_is_created(tmp_path: Path) -> None:
    models = tmp_path / "new.toml"
    add_quants(models, "m", tmp_path / "m-F16.gguf", [("Q8_0", tmp_path / "m-Q8_0.gguf")])
    m = load_models_toml(models).get_set("m")
    assert m.baseline.label == "F16" and [q.label for q in m.quants] == ["Q8_0"]
