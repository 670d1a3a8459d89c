"""Shared fixtures: a fake model set with questions, and the tiny real GGUF files; every test
writes only under a temporary folder (tests/hermetic.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.backends.fake import GROUPING_NOISE, FakeBackendFactory, FakeModel
from ggflip.config.models_toml import ModelSet, ModelSpec
from ggflip.tasks.questions import Question, QuestionSet


@pytest.fixture
def fake_questions() -> QuestionSet:
    """40 four-option questions over two subjects."""
    subjects = ("algebra", "history")
    return QuestionSet(
        "memory",
        tuple(
            Question(
                f"q{i}",
                subjects[i % 2],
                f"question number {i} about things",
                ("w1", "w2", "w3", "w4"),
                i % 4,
            )
            for i in range(40)
        ),
    )


@pytest.fixture
def fake_set() -> ModelSet:
    """A baseline, itself as a quant, and two noisier fakes."""
    return ModelSet(
        "fake",
        ModelSpec("F16", Path("/m/f16.gguf")),
        (
            ModelSpec("self", Path("/m/f16.gguf")),
            ModelSpec("Q8_0", Path("/m/q8.gguf")),
            ModelSpec("Q2_K", Path("/m/q2.gguf")),
        ),
    )


@pytest.fixture
def fake_factory() -> FakeBackendFactory:
    return FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(),
            "/m/q8.gguf": FakeModel(noise=0.05),
            "/m/q2.gguf": FakeModel(noise=0.6),
        }
    )


@pytest.fixture
def grouped_factory() -> FakeBackendFactory:
    """The same fakes with llama.cpp-like grouping noise: another decode grouping moves the logits
    a little, so the noise floor is small but not zero."""
    return FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(batch_noise=GROUPING_NOISE),
            "/m/q8.gguf": FakeModel(noise=0.05, batch_noise=GROUPING_NOISE),
            "/m/q2.gguf": FakeModel(noise=0.6, batch_noise=GROUPING_NOISE),
        }
    )


pytest_plugins = ("tests.hermetic", "tests.fixtures_gguf")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked real_model unless GGFLIP_REAL_MODEL=1 (scripts/test.sh sets it)."""
    import os

    if os.environ.get("GGFLIP_REAL_MODEL") == "1":
        return
    skip = pytest.mark.skip(
        reason="needs the real Gemma 3 270M files; set GGFLIP_REAL_MODEL=1 (scripts/test.sh does)"
    )
    for item in items:
        if "real_model" in item.keywords:
            item.add_marker(skip)
