"""Fuzzing: generated models.toml text and question rows end in a GgflipError or a valid result,
never a traceback."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggflip.config.models_toml import ModelsConfig, parse_models_toml
from ggflip.errors import ConfigError, DataError
from ggflip.tasks.questions import Question, load_jsonl, question_from_row

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_KEYS = [
    "llama",
    "sets",
    "baseline",
    "quants",
    "path",
    "label",
    "description",
    "n_ctx",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "n_gpu_layers",
    "main_gpu",
    "flash_attn",
    "use_mmap",
    "n_seq_max",
    "x",
]
_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=12),
    st.floats(allow_nan=False),
    st.sampled_from(["model.gguf", "{cache}/m.gguf", "~/x.gguf", "$HOME/y", "a\x00b"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


def _toml_key(key: str) -> str:
    return (
        key
        if key and all(c in string.ascii_letters + string.digits + "_-" for c in key)
        else json.dumps(key)
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value).replace("inf", "inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def _documents(draw: st.DrawFn) -> str:
    """A models.toml-shaped document: mostly the right keys, with wrong types and values mixed
    in."""
    llama = draw(st.dictionaries(st.sampled_from(_KEYS[7:]), _scalars, max_size=4))
    model = st.fixed_dictionaries(
        {"path": st.one_of(st.text(max_size=10), _scalars)},
        optional={
            "label": _scalars,
            "llama": st.one_of(_values, st.dictionaries(st.sampled_from(_KEYS[7:]), _scalars)),
        },
    )
    sets = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=6),
            st.fixed_dictionaries(
                {},
                optional={
                    "baseline": st.one_of(model, _values),
                    "quants": st.one_of(st.lists(model, max_size=3), _values),
                    "description": _scalars,
                    "llama": _values,
                    "bogus": _scalars,
                },
            ),
            max_size=2,
        )
    )
    lines = ["[llama]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in llama.items()]
    for name, table in sets.items():
        lines.append(f"[sets.{_toml_key(name)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    if draw(st.booleans()):
        lines.append(f"{draw(st.sampled_from(_KEYS))} = {_toml_value(draw(_values))}")
    return "\n".join(lines) + "\n"


def _parse(text: str) -> ModelsConfig | None:
    try:
        return parse_models_toml(text, Path("/tmp/fuzz/models.toml"))
    except ConfigError as exc:
        assert str(exc).startswith("/tmp/fuzz/models.toml: ") and "\n" not in str(exc)
        return None


@FUZZ
@given(_documents())
def test_generated_models_toml_gives_config_or_config_error(text: str) -> None:
    config = _parse(text)
    if config is not None:
        for model_set in config.sets.values():
            for model in model_set.models:
                assert model.label.strip() and "\x00" not in str(model.path)
                assert 0 < model.llama.n_ctx < 2**31 and 0 <= model.llama.n_threads < 2**31


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_as_models_toml(text: str) -> None:
    _parse(text)


VALID = (Path(__file__).parent / "data" / "config" / "valid.toml").read_text()


@FUZZ
@given(st.integers(0, len(VALID)), st.integers(0, 20), st.text(max_size=8))
def test_mutated_valid_models_toml(at: int, cut: int, insert: str) -> None:
    _parse(VALID[:at] + insert + VALID[at + cut :])


_row_keys = [
    "question",
    "choices",
    "answer",
    "correct_answer",
    "answer_a",
    "answer_b",
    "answer_c",
    "answer_d",
    "answer_e",
    "subject",
    "topic",
    "id",
]
_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**65), 2**65),
        st.floats(),
        st.text(max_size=8),
        st.sampled_from(["A", "b", " C ", "2", "²", "٣", "10", "-1", ""]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
_rows = st.one_of(
    st.dictionaries(st.sampled_from(_row_keys), _json_values, max_size=8), _json_values
)


@FUZZ
@given(_rows)
def test_generated_rows_give_question_or_data_error(row: Any) -> None:
    try:
        question = question_from_row(row, "fuzz-1")
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(question, Question) and 0 <= question.gold < len(question.choices) >= 2
    json.dumps(
        [question.id, question.subject, question.text, question.choices]
    )  # hashable into cache keys


@FUZZ
@given(
    st.lists(
        st.one_of(
            _rows.map(lambda r: json.dumps(r, allow_nan=True)),
            st.text(max_size=40),
            st.sampled_from(["[" * 5000, '{"question": "' + "x" * 10, "\ufeff{}"]),
        ),
        max_size=6,
    ),
    st.booleans(),
)
def test_generated_jsonl_gives_questions_or_data_error(
    tmp_path_factory: Any, lines: list[str], skip: bool
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "q.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        questions = load_jsonl(path, skip_bad_rows=skip)
    except DataError:
        return
    assert questions.questions and all(len(q.choices) >= 2 for q in questions.questions)
