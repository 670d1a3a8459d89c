"""The warning a busy machine gets before llama.cpp starts its spinning threads."""

from __future__ import annotations

import logging

import pytest

from ggflip.backends import busy
from ggflip.config.models_toml import LlamaSettings


def test_no_warning_while_the_load_fits_the_cores() -> None:
    assert busy.busy_warning(LlamaSettings(), load=1.9, cores=2) is None
    assert busy.busy_warning(LlamaSettings(), load=2.0, cores=2) is None


def test_a_loaded_machine_names_the_setting_to_lower() -> None:
    message = busy.busy_warning(LlamaSettings(), load=2.9, cores=2)
    assert message is not None
    assert "load average 2.9 on 2 cores" in message
    assert "2 threads (n_threads = 0 (all))" in message
    assert "set n_threads = 1 under [llama] in models.toml" in message
    eight = busy.busy_warning(LlamaSettings(n_threads=8), load=12.0, cores=8)
    assert eight is not None and "8 threads (n_threads = 8)" in eight


def test_one_thread_already_is_not_told_to_use_one_thread() -> None:
    message = busy.busy_warning(LlamaSettings(n_threads=1), load=4.0, cores=2)
    assert message is not None
    assert "1 thread (n_threads = 1)" in message
    assert "set n_threads" not in message and message.endswith("wait for the other job")


def test_the_warning_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(busy, "_warned", type(busy._warned)())
    monkeypatch.setattr(busy.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(busy, "cores_available", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="ggflip"):
        busy.warn_if_busy(LlamaSettings())
        busy.warn_if_busy(LlamaSettings())
    assert [r.getMessage().count("already busy") for r in caplog.records] == [1]
